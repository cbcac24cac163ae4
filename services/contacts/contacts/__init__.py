"""contacts: resolves an address to a contact (creating one, race-safe) and keeps every
contact's timeline of email in and out."""

SERVICE_NAME = "contacts"
