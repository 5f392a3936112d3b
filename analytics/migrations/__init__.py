"""Numbered schema migrations, applied in order and recorded in `schema_migrations`.

Each module `mNNNN_<name>.py` defines `forward(ctx)` and `backward(ctx)`
returning the SQL statements to run. Statements are idempotent
(`IF NOT EXISTS` / `IF EXISTS`), so a migration interrupted half-way is
simply applied again.
"""
