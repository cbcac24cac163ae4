"""Reliable messaging on RabbitMQ: topology, transactional outbox, dead-lettering event handlers."""
