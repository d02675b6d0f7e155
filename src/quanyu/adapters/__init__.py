"""Storage and the outside world: tables, repositories, migrations, channel payloads."""
