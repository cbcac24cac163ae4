"""The contacts service's rules in plain Python (no nameko, SQLAlchemy, kombu or eventlet):
`senders` — who an inbound message's contact is; `timeline` — what a timeline entry shows and
whom an email we sent is logged for; `visibility` — whose inbox mail a caller may see."""
