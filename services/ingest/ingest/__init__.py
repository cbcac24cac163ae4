"""mailroom ingest: takes mail in, parses and classifies it, and publishes it to the other services."""

SERVICE_NAME = "ingest"
