"""mailroom outbound service: compose, reply and forward; builds MIME and delivers over SMTP."""

SERVICE_NAME = "outbound"
