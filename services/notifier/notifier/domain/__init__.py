"""The notifier's rules in plain Python (no nameko, SQLAlchemy, kombu or eventlet): which events
fan out to which Slack channels and webhook subscriptions, and what each notification says. Empty
until Slack and webhooks are built (the notifier's own issue)."""
