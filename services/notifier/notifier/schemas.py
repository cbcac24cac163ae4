"""marshmallow shapes of the notifier's HTTP bodies, RPC payloads and config files: none yet."""
