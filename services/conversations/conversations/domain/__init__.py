"""The conversations service's rules in plain Python (no nameko, SQLAlchemy, kombu or eventlet):
`threads` — which conversation an inbound message continues; `participants` — who takes part in
a conversation (only they join it; free-mail domains as data); `placement` — where it goes once
matched (join, reopen, adopt a late parent or a new, linked conversation); `conversation` —
statuses, views and the reply token; `inboxes` — an inbox's channels, members and announced
digest; `access` — who may view, act in and manage inboxes; `comments` — @mentions; `delivery` —
the delivery state of an email we sent."""
