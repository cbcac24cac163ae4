"""The notifier's use cases (the write side): none yet; Slack and webhook deliveries come here,
each taking a session, the outbox and the settings."""
