"""The ledger's storage: SQLModel tables, SQLAlchemy Core queries and Alembic migrations for
SQLite (embedded default) and PostgreSQL (production).

`sql_storage.open_ledger_storage` builds the storage for a database URL: `sqlite` or `postgres`,
each implementing the service's ports on what `sql_storage` shares. PostgreSQL's write path has
modules of its own: `lock_statement`, `bulk_statement` and `pipeline`."""
