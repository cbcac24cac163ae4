"""mailroom conversations service: inboxes, channels, threading, conversations and their HTTP API."""

SERVICE_NAME = "conversations"
