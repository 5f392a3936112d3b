"""Alembic migrations of the pass registry, applied at every start (`migrate.upgrade`)."""
