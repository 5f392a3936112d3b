"""The registry: passes, their audit trail, the outbox of lifecycle changes.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "passes",
        sa.Column("pass_id", sa.String(32), primary_key=True),
        sa.Column("project_id", sa.String(128), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False, unique=True),
        sa.Column("secret_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("credential_version", sa.Integer(), nullable=False),
        sa.Column("agent_name", sa.String(100), nullable=False),
        sa.Column("agent_name_folded", sa.String(100), nullable=False),
        sa.Column("agent_type", sa.String(64), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("access_level", sa.String(16), nullable=False),
        sa.Column("organization", sa.String(200)),
        sa.Column("usage_type", sa.String(32), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("integration_notes", sa.Text()),
        sa.Column("credential_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_passes_project_id", "passes", ["project_id"])
    op.create_index("ix_passes_project_created", "passes", ["project_id", "created_at", "pass_id"])
    op.create_table(
        "pass_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(128), nullable=False),
        sa.Column("pass_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_pass_audit_pass", "pass_audit", ["project_id", "pass_id", "id"])
    op.create_table(
        "pass_outbox",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("pass_id", sa.String(32), nullable=False),
        sa.Column("state", sa.JSON()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pass_outbox")
    op.drop_index("ix_pass_audit_pass", "pass_audit")
    op.drop_table("pass_audit")
    op.drop_index("ix_passes_project_created", "passes")
    op.drop_index("ix_passes_project_id", "passes")
    op.drop_table("passes")
