"""The notifier's read models: none yet (its only HTTP route is the health check)."""
