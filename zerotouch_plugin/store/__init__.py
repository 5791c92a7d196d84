"""store layer: persistence (SQLAlchemy, SQLite by default, PostgreSQL by URL), used by
the services; a write that returns is durable. See docs/architecture.md."""
