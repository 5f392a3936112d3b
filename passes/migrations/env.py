"""Alembic's entry point: the connection is handed in by `sentinel_usage.passes.migrate`."""

from alembic import context

from sentinel_usage.passes.tables import Base

connection = context.config.attributes["connection"]
# Batch mode lets the same migration alter tables on SQLite, which cannot ALTER much.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
