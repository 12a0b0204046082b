"""Persistence: SQLAlchemy models, Alembic migrations, repositories (SQLite default, PostgreSQL)."""
