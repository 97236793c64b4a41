"""Alembic environment and versions: the only source of the schema."""
