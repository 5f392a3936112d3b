"""The registry's tables (SQLAlchemy 2 declarative); Alembic's migrations create them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, Date, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
    }


class PassRow(Base):
    __tablename__ = "passes"

    pass_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(128), index=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    credential_version: Mapped[int] = mapped_column(Integer, default=1)
    agent_name: Mapped[str] = mapped_column(String(100))
    agent_name_folded: Mapped[str] = mapped_column(String(100))  # lowercase, for search
    agent_type: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    access_level: Mapped[str] = mapped_column(String(16))
    organization: Mapped[str | None] = mapped_column(String(200))
    usage_type: Mapped[str] = mapped_column(String(32))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    scopes: Mapped[str] = mapped_column(Text)  # space-separated, as in a token's `scope`
    integration_notes: Mapped[str | None] = mapped_column(Text)
    credential_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_passes_project_created", "project_id", "created_at", "pass_id"),)


class AuditRow(Base):
    """Every lifecycle action, kept after the pass is deleted."""

    __tablename__ = "pass_audit"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    project_id: Mapped[str] = mapped_column(String(128))
    pass_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(256))
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_pass_audit_pass", "project_id", "pass_id", "id"),)


class OutboxRow(Base):
    """A lifecycle change waiting to be published on `sentinel.passes`; written in the
    transaction that made the change, deleted once the broker acknowledged it."""

    __tablename__ = "pass_outbox"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    pass_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[dict[str, Any] | None]  # None: the pass was deleted (a tombstone)
    created_at: Mapped[datetime]
