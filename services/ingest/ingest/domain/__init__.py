"""Pure domain code of ingest: parsing, classification, sanitisation, forwards. No IO, no framework."""
