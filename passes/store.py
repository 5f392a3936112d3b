"""The pass registry: passes, their audit trail and the outbox of lifecycle changes, in one
relational database (SQLite embedded, PostgreSQL in production) through SQLAlchemy 2.

Every change writes the pass, an audit entry and an outbox record in one transaction, so
what gateways learn (the outbox, published on `sentinel.passes`) is exactly what was
committed. Every read and write but the token endpoint's is scoped by project."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import delete, event, func, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.core.errors import SentinelError
from sentinel_usage.passes.credentials import IssuedSecret, new_client_id, new_pass_id, new_secret
from sentinel_usage.passes.model import (
    AccessLevel,
    PassCreate,
    PassStatus,
    PassUpdate,
    SentinelPass,
    UsageType,
)
from sentinel_usage.passes.tables import AuditRow, OutboxRow, PassRow

MAX_PAGE: Final = 200
IN_CHUNK: Final = 5_000
RELAY_LOCK: Final = 0x5E471_0B0  # pg advisory lock of the outbox relay
Standing = Literal["present", "deleted", "unknown"]


class PassNotFoundError(SentinelError):
    """No such pass in this project."""


class PassConflictError(SentinelError):
    """The pass id is taken, or a change contradicts what the pass holds."""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    pass_id: str
    action: str
    subject: str
    at: datetime
    detail: dict[str, Any]


@dataclass(frozen=True)
class PassPage:
    items: list[SentinelPass]
    next_after: tuple[datetime, str] | None  # (created_at, pass_id) of the last item


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    pass_id: str
    state: dict[str, Any] | None


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so readers never block writers."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


GENERATED_ID_ATTEMPTS: Final = 5


class PassStore:
    def __init__(self, engine: AsyncEngine, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        self.changed = asyncio.Event()  # set after a commit that wrote the outbox
        self.generation = 0  # raised by every change this process commits

    def _changed(self) -> None:
        self.generation += 1
        self.changed.set()

    async def close(self) -> None:
        await self.engine.dispose()

    # -- lifecycle -------------------------------------------------------------

    async def create(
        self, project_id: str, spec: PassCreate, subject: str
    ) -> tuple[SentinelPass, IssuedSecret]:
        now = self._clock.now()
        valid_from, valid_until = spec.validity(now.date())
        secret = new_secret()
        # A generated id may be taken already (6 characters of 36: among 20,000 passes
        # two share one with a chance of 9%, measured by the list bench): draw another.
        # An id the caller chose is theirs: taken means a 409.
        attempts = 1 if spec.pass_id else GENERATED_ID_ATTEMPTS
        for attempt in range(1, attempts + 1):
            row = PassRow(
                pass_id=spec.pass_id or new_pass_id(now.date()),
                project_id=project_id,
                client_id=new_client_id(),
                secret_digest=secret.digest,
                credential_version=1,
                agent_name=spec.agent_name,
                agent_name_folded=spec.agent_name.lower(),
                agent_type=spec.agent_type,
                description=spec.description,
                access_level=spec.access_level.value,
                organization=spec.organization,
                usage_type=spec.usage_type.value,
                valid_from=valid_from,
                valid_until=valid_until,
                scopes=" ".join(spec.scopes),
                integration_notes=spec.integration_notes,
                credential_type=spec.credential_type,
                status=PassStatus.ACTIVE.value,
                revoked_at=None,
                created_at=now,
                updated_at=now,
            )
            try:
                async with self._sessions.begin() as session:
                    session.add(row)
                    await session.flush()
                    created = self._record(
                        session, row, "created", subject, {"scopes": list(spec.scopes)}
                    )
                break
            except IntegrityError:
                if attempt == attempts:
                    raise PassConflictError(f"pass_id {row.pass_id!r} is taken") from None
        self._changed()
        return created, secret

    async def update(
        self, project_id: str, pass_id: str, update: PassUpdate, subject: str
    ) -> SentinelPass:
        changes = update.changes()
        async with self._sessions.begin() as session:
            row = await self._row(session, project_id, pass_id, for_update=True)
            before = _pass(row)
            for name, value in changes.items():
                if name == "scopes":
                    row.scopes = " ".join(value)
                elif isinstance(value, AccessLevel | UsageType):
                    setattr(row, name, value.value)
                else:
                    setattr(row, name, value)
            if "agent_name" in changes:
                row.agent_name_folded = row.agent_name.lower()
            if row.valid_until < row.valid_from:
                raise PassConflictError(
                    f"valid_until ({row.valid_until}) would be before valid_from "
                    f"({row.valid_from}); change both together"
                )
            row.updated_at = self._clock.now()
            after = _pass(row)
            detail = _diff(before, after)
            action = "scopes_changed" if set(detail) == {"scopes"} else "updated"
            self._record(session, row, action, subject, detail, current=after)
        self._changed()
        return after

    async def regenerate(
        self, project_id: str, pass_id: str, subject: str
    ) -> tuple[SentinelPass, IssuedSecret]:
        secret = new_secret()
        async with self._sessions.begin() as session:
            row = await self._row(session, project_id, pass_id, for_update=True)
            row.secret_digest = secret.digest
            row.credential_version += 1
            row.updated_at = self._clock.now()
            rotated = self._record(
                session, row, "regenerated", subject, {"credential_version": row.credential_version}
            )
        self._changed()
        return rotated, secret

    async def set_status(
        self, project_id: str, pass_id: str, status: PassStatus, subject: str
    ) -> SentinelPass:
        """`active` also lifts a revocation; `inactive` pauses."""
        async with self._sessions.begin() as session:
            row = await self._row(session, project_id, pass_id, for_update=True)
            row.status = status.value
            if status is PassStatus.ACTIVE:
                row.revoked_at = None
            row.updated_at = self._clock.now()
            action = "activated" if status is PassStatus.ACTIVE else "deactivated"
            changed = self._record(session, row, action, subject, {})
        self._changed()
        return changed

    async def revoke(self, project_id: str, pass_id: str, subject: str) -> SentinelPass:
        async with self._sessions.begin() as session:
            row = await self._row(session, project_id, pass_id, for_update=True)
            now = self._clock.now()
            row.status = PassStatus.INACTIVE.value
            row.revoked_at = row.revoked_at or now
            row.updated_at = now
            revoked = self._record(session, row, "revoked", subject, {})
        self._changed()
        return revoked

    async def delete(self, project_id: str, pass_id: str, subject: str) -> None:
        async with self._sessions.begin() as session:
            row = await self._row(session, project_id, pass_id, for_update=True)
            self._record(session, row, "deleted", subject, {}, tombstone=True)
            await session.delete(row)
        self._changed()

    # -- reads -----------------------------------------------------------------

    async def get(self, project_id: str, pass_id: str) -> SentinelPass:
        async with self._sessions() as session:
            return _pass(await self._row(session, project_id, pass_id))

    async def page(
        self,
        project_id: str,
        *,
        limit: int,
        after: tuple[datetime, str] | None = None,
        search: str | None = None,
        status: str | None = None,
    ) -> PassPage:
        """Newest first. `search` matches the agent name (any part, any case) or the
        pass id (its start); `status` is active, inactive or revoked."""
        query = select(PassRow).where(PassRow.project_id == project_id)
        if search:
            needle = _like_literal(search.strip())
            query = query.where(
                or_(
                    PassRow.agent_name_folded.like(f"%{needle.lower()}%", escape="\\"),
                    PassRow.pass_id.like(f"{needle.upper()}%", escape="\\"),
                )
            )
        if status == "revoked":
            query = query.where(PassRow.revoked_at.is_not(None))
        elif status is not None:
            query = query.where(PassRow.status == status, PassRow.revoked_at.is_(None))
        if after is not None:
            query = query.where(tuple_(PassRow.created_at, PassRow.pass_id) < after)
        query = query.order_by(PassRow.created_at.desc(), PassRow.pass_id.desc()).limit(limit + 1)
        async with self._sessions() as session:
            rows = list((await session.scalars(query)).all())
        items = [_pass(r) for r in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return PassPage(items, (last.created_at, last.pass_id) if last else None)

    async def standing(self, project_id: str, pass_id: str) -> Standing:
        """`present` (the registry holds it), `deleted` (its last action was a delete),
        or `unknown` (never here: a pass seen only in events, or nothing)."""
        async with self._sessions() as session:
            present = await session.scalar(
                select(PassRow.pass_id).where(
                    PassRow.project_id == project_id, PassRow.pass_id == pass_id
                )
            )
            if present is not None:
                return "present"
            last = await session.scalar(
                select(AuditRow.action)
                .where(AuditRow.project_id == project_id, AuditRow.pass_id == pass_id)
                .order_by(AuditRow.id.desc())
                .limit(1)
            )
        return "deleted" if last == "deleted" else "unknown"

    async def deleted_among(self, project_id: str, pass_ids: Sequence[str]) -> set[str]:
        """Which of `pass_ids` were deleted from the registry (and not created again)."""
        deleted: set[str] = set()
        async with self._sessions() as session:
            for start in range(0, len(pass_ids), IN_CHUNK):
                query = select(AuditRow.pass_id).where(
                    AuditRow.project_id == project_id,
                    AuditRow.pass_id.in_(list(pass_ids[start : start + IN_CHUNK])),
                    AuditRow.action == "deleted",
                )
                deleted.update((await session.scalars(query)).all())
        return deleted - await self.known(project_id, list(deleted))

    async def known(self, project_id: str, pass_ids: Sequence[str]) -> set[str]:
        """Which of `pass_ids` this registry manages in the project."""
        found: set[str] = set()
        async with self._sessions() as session:
            # In chunks: SQLite and asyncpg bind at most 32,767 parameters a statement.
            for start in range(0, len(pass_ids), IN_CHUNK):
                chunk = list(pass_ids[start : start + IN_CHUNK])
                query = select(PassRow.pass_id).where(
                    PassRow.project_id == project_id, PassRow.pass_id.in_(chunk)
                )
                found.update((await session.scalars(query)).all())
        return found

    async def audit(
        self, project_id: str, pass_id: str | None, *, limit: int, before: int | None = None
    ) -> list[AuditEntry]:
        """Lifecycle actions of the project (or of one pass), newest first; a deleted
        pass's stay."""
        query = select(AuditRow).where(AuditRow.project_id == project_id)
        if pass_id is not None:
            query = query.where(AuditRow.pass_id == pass_id)
        if before is not None:
            query = query.where(AuditRow.id < before)
        query = query.order_by(AuditRow.id.desc()).limit(limit)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [
            AuditEntry(r.id, r.pass_id, r.action, r.subject, _utc(r.at), dict(r.detail))
            for r in rows
        ]

    async def credentials(self, client_id: str) -> tuple[SentinelPass, bytes] | None:
        """The pass of `client_id` and its secret's hash (the token endpoint, unscoped)."""
        async with self._sessions() as session:
            row = await session.scalar(select(PassRow).where(PassRow.client_id == client_id))
        return (_pass(row), row.secret_digest) if row is not None else None

    async def by_pass_id(self, pass_id: str) -> SentinelPass | None:
        """Unscoped: introspection of a token that names its pass."""
        async with self._sessions() as session:
            row = await session.get(PassRow, pass_id)
        return _pass(row) if row is not None else None

    # -- outbox ------------------------------------------------------------------

    async def relay_outbox(
        self, send: Callable[[Sequence[OutboxRecord]], Awaitable[None]], limit: int = 500
    ) -> int:
        """Hand the oldest waiting records to `send`, then delete them, in one transaction:
        on PostgreSQL an advisory lock makes one relay at a time do it, so that records
        of one pass never overtake each other across processes."""
        async with self._sessions.begin() as session:
            if self.engine.dialect.name == "postgresql":
                locked = await session.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK)))
                if not locked:
                    return 0
            rows = (
                await session.scalars(select(OutboxRow).order_by(OutboxRow.id).limit(limit))
            ).all()
            if not rows:
                return 0
            await send([OutboxRecord(r.id, r.pass_id, r.state) for r in rows])
            await session.execute(delete(OutboxRow).where(OutboxRow.id.in_([r.id for r in rows])))
            return len(rows)

    async def republish_all(self) -> int:
        """Every pass's current state, and a tombstone for every pass deleted, into the
        outbox: for a broker that kept nothing (the embedded Tansu holds its topics in
        memory), so that a gateway reading `sentinel.passes` from the start still
        refuses a deleted pass's token. The number of records written."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            rows = (await session.scalars(select(PassRow))).all()
            present = {row.pass_id for row in rows}
            deleted = (
                set(
                    (
                        await session.scalars(
                            select(AuditRow.pass_id).where(AuditRow.action == "deleted")
                        )
                    ).all()
                )
                - present
            )
            for row in rows:
                session.add(
                    OutboxRow(
                        pass_id=row.pass_id, state=published_state(_pass(row)), created_at=now
                    )
                )
            for pass_id in sorted(deleted):
                session.add(OutboxRow(pass_id=pass_id, state=None, created_at=now))
        self._changed()
        return len(rows) + len(deleted)

    async def outbox(self, limit: int = 500) -> list[OutboxRecord]:
        query = select(OutboxRow).order_by(OutboxRow.id).limit(limit)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [OutboxRecord(r.id, r.pass_id, r.state) for r in rows]

    async def published(self, ids: Sequence[int]) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(OutboxRow).where(OutboxRow.id.in_(list(ids))))

    # -- helpers ---------------------------------------------------------------

    async def _row(
        self, session: AsyncSession, project_id: str, pass_id: str, for_update: bool = False
    ) -> PassRow:
        query = select(PassRow).where(PassRow.project_id == project_id, PassRow.pass_id == pass_id)
        if for_update:
            query = query.with_for_update()
        row = await session.scalar(query)
        if row is None:
            raise PassNotFoundError(pass_id)
        return row

    def _record(
        self,
        session: AsyncSession,
        row: PassRow,
        action: str,
        subject: str,
        detail: dict[str, Any],
        *,
        current: SentinelPass | None = None,
        tombstone: bool = False,
    ) -> SentinelPass:
        """The audit entry and the outbox record of a change to `row` (in `current`,
        when the caller has it already); returns the pass as changed."""
        current = current or _pass(row)
        now = self._clock.now()
        session.add(
            AuditRow(
                project_id=row.project_id,
                pass_id=row.pass_id,
                action=action,
                subject=subject,
                at=now,
                detail=detail,
            )
        )
        state = None if tombstone else published_state(current)
        session.add(OutboxRow(pass_id=row.pass_id, state=state, created_at=now))
        return current


def published_state(sentinel_pass: SentinelPass) -> dict[str, Any]:
    """What `sentinel.passes` says of a pass: enough for a gateway to admit or refuse."""
    return {
        "pass_id": sentinel_pass.pass_id,
        "project_id": sentinel_pass.project_id,
        "client_id": sentinel_pass.client_id,
        "status": sentinel_pass.status.value,
        "revoked": sentinel_pass.revoked_at is not None,
        "scopes": list(sentinel_pass.scopes),
        "credential_version": sentinel_pass.credential_version,
        "valid_until": sentinel_pass.valid_until.isoformat(),
    }


def _pass(row: PassRow) -> SentinelPass:
    values = {name: getattr(row, name) for name in SentinelPass.model_fields}
    values["scopes"] = tuple(row.scopes.split())
    for name in ("revoked_at", "created_at", "updated_at"):
        values[name] = _utc(values[name]) if values[name] else None
    return SentinelPass(**values)


def _diff(before: SentinelPass, after: SentinelPass) -> dict[str, Any]:
    fields = (
        "agent_name",
        "agent_type",
        "description",
        "access_level",
        "organization",
        "usage_type",
        "valid_from",
        "valid_until",
        "scopes",
        "integration_notes",
    )
    changed = {}
    for name in fields:
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            changed[name] = {"from": _plain(old), "to": _plain(new)}
    return changed


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.value if hasattr(value, "value") else value


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes for what was written in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
