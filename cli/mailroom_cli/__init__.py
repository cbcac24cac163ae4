"""The `mailroom` command. It composes the services; no service imports it."""
