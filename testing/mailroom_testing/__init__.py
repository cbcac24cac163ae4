"""Test helpers shipped with the shared library: real RabbitMQ vhosts, real PostgreSQL databases,
running services as real processes, and an event subscriber. Registered as a pytest plugin."""
