"""mailroom notifier service: Slack notifications and replies, signed webhooks."""

SERVICE_NAME = "notifier"
