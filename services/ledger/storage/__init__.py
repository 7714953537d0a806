"""The ledger's storage: SQLModel tables, SQLAlchemy Core queries and Alembic migrations for
SQLite (embedded default) and PostgreSQL (production)."""
