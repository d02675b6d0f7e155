"""Ways in: HTTP API, CLI, console."""
