"""Orders and scenario policies in SQLite or PostgreSQL."""
