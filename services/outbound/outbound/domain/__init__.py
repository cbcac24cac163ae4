"""Outbound's rules in plain Python (no nameko, eventlet, SQLAlchemy or kombu): what may go in a
header, who a reply goes to, what the body and the MIME message are, how templates render."""
