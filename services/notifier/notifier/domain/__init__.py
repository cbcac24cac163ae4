"""The notifier's rules in plain Python (no nameko, SQLAlchemy, kombu or eventlet):
- retries.py: the webhook retry schedule, its jitter, and which answers are retried;
- signing.py: Standard Webhooks secrets and signatures;
- subscriptions.py: which events a subscription receives, and what a subscription may say;
- vault.py: the signing secrets encrypted at rest (Fernet).
Which URLs and addresses a webhook may reach (SSRF rules) is mailroom_shared.safe_http, shared with
the chat connectors."""
