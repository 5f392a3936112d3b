"""The pass registry's store, the same suite on SQLite and on a real PostgreSQL 15 server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from sentinel_usage.core.clock import FixedClock
from sentinel_usage.passes import store as store_module
from sentinel_usage.passes.credentials import secret_matches
from sentinel_usage.passes.migrate import downgrade, pending, upgrade
from sentinel_usage.passes.model import PassCreate, PassStatus, PassUpdate
from sentinel_usage.passes.store import (
    PassConflictError,
    PassNotFoundError,
    PassStore,
    create_engine,
)
from tests.postgres import postgres_server

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PassStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'passes.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    await downgrade(engine, "base")  # each test starts from an empty registry
    await upgrade(engine)
    registry = PassStore(engine, FixedClock(NOW))
    try:
        yield registry
    finally:
        await registry.close()


def spec(**fields: object) -> PassCreate:
    return PassCreate.model_validate(
        {"agent_name": "Sourcing Bot", "agent_type": "Sourcing Agent", **fields}
    )


async def test_migrations_are_applied_and_reversible(store: PassStore) -> None:
    assert await pending(store.engine) == []
    await downgrade(store.engine, "base")
    assert await pending(store.engine) == ["0001"]
    await upgrade(store.engine)
    assert await pending(store.engine) == []


async def test_a_new_pass_has_the_seeds_defaults_and_its_secret_only_as_a_hash(
    store: PassStore,
) -> None:
    created, secret = await store.create("p1", spec(), "admin-1")
    assert created.agent_type == "sourcing_agent"
    assert created.access_level == "standard"
    assert created.usage_type == "automation_tool"
    assert created.scopes == ("read", "write")
    assert (created.valid_from, created.valid_until) == (date(2026, 11, 27), date(2027, 11, 27))
    assert created.status is PassStatus.ACTIVE
    assert created.credential_version == 1
    assert created.pass_id.startswith("SP-2026-")
    assert len(secret.secret) >= 43  # 256 bits, base64url
    found = await store.credentials(created.client_id)
    assert found is not None
    assert secret_matches(secret.secret, found[1])
    async with store.engine.connect() as connection:
        dump = str((await connection.execute(text("SELECT * FROM passes"))).all())
    assert secret.secret not in dump
    assert "<hidden>" in repr(secret)


async def test_a_pass_id_is_unique(store: PassStore) -> None:
    await store.create("p1", spec(pass_id="SP-2024-A1B2C3"), "admin-1")
    with pytest.raises(PassConflictError):
        await store.create("p2", spec(pass_id="SP-2024-A1B2C3"), "admin-1")


async def test_every_read_and_write_is_scoped_by_project(store: PassStore) -> None:
    created, _ = await store.create("p1", spec(), "admin-1")
    with pytest.raises(PassNotFoundError):
        await store.get("p2", created.pass_id)
    with pytest.raises(PassNotFoundError):
        await store.revoke("p2", created.pass_id, "intruder")
    with pytest.raises(PassNotFoundError):
        await store.delete("p2", created.pass_id, "intruder")
    assert (await store.get("p1", created.pass_id)).status is PassStatus.ACTIVE
    assert await store.audit("p2", created.pass_id, limit=10) == []


async def test_lifecycle_changes_are_audited_and_published_in_order(store: PassStore) -> None:
    created, first = await store.create("p1", spec(), "admin-1")
    pass_id = created.pass_id
    changed = await store.update(
        "p1", pass_id, PassUpdate.model_validate({"scopes": "read:data, admin:users"}), "admin-2"
    )
    assert changed.scopes == ("read:data", "admin:users")
    rotated, second = await store.regenerate("p1", pass_id, "admin-2")
    assert rotated.credential_version == 2
    found = await store.credentials(created.client_id)
    assert found is not None
    assert secret_matches(second.secret, found[1])
    assert not secret_matches(first.secret, found[1])
    paused = await store.set_status("p1", pass_id, PassStatus.INACTIVE, "admin-2")
    assert paused.exchange_refusal(NOW) == "the pass is inactive"
    revoked = await store.revoke("p1", pass_id, "admin-2")
    assert revoked.revoked_at == NOW
    active = await store.set_status("p1", pass_id, PassStatus.ACTIVE, "admin-2")
    assert active.revoked_at is None
    assert active.exchange_refusal(NOW) is None
    await store.delete("p1", pass_id, "admin-3")
    with pytest.raises(PassNotFoundError):
        await store.get("p1", pass_id)
    assert await store.credentials(created.client_id) is None

    trail = await store.audit("p1", pass_id, limit=50)
    assert [(e.action, e.subject) for e in reversed(trail)] == [
        ("created", "admin-1"),
        ("scopes_changed", "admin-2"),
        ("regenerated", "admin-2"),
        ("deactivated", "admin-2"),
        ("revoked", "admin-2"),
        ("activated", "admin-2"),
        ("deleted", "admin-3"),
    ]
    assert trail[-2].detail == {
        "scopes": {"from": ["read", "write"], "to": ["read:data", "admin:users"]}
    }
    outbox = await store.outbox()
    assert [r.pass_id for r in outbox] == [pass_id] * 7
    assert [r.state["credential_version"] if r.state else None for r in outbox] == [
        1,
        1,
        2,
        2,
        2,
        2,
        None,
    ]
    await store.published([r.id for r in outbox[:3]])
    assert [r.id for r in await store.outbox()] == [r.id for r in outbox[3:]]


async def test_an_update_that_inverts_the_validity_is_refused(store: PassStore) -> None:
    created, _ = await store.create("p1", spec(), "admin-1")
    with pytest.raises(PassConflictError, match="would be before valid_from"):
        await store.update(
            "p1", created.pass_id, PassUpdate(valid_until=date(2026, 1, 1)), "admin-1"
        )
    assert (await store.get("p1", created.pass_id)).valid_until == date(2027, 11, 27)


async def test_pages_walk_every_pass_once_with_search_and_status(store: PassStore) -> None:
    ids = []
    for i in range(230):
        created, _ = await store.create(
            "p1", spec(agent_name=f"Agent {i:03d}", pass_id=f"SP-2026-{i:06d}"), "admin"
        )
        ids.append(created.pass_id)
        if i % 10 == 0:
            await store.revoke("p1", created.pass_id, "admin")
        elif i % 10 == 1:
            await store.set_status("p1", created.pass_id, PassStatus.INACTIVE, "admin")
    await store.create("p2", spec(), "admin")

    async def walk(**filters: str) -> list[str]:
        seen: list[str] = []
        after = None
        while True:
            page = await store.page("p1", limit=100, after=after, **filters)
            seen += [p.pass_id for p in page.items]
            if page.next_after is None:
                return seen
            after = page.next_after

    everything = await walk()
    assert sorted(everything) == sorted(ids)
    assert len(everything) == len(set(everything))
    assert len(await walk(status="revoked")) == 23
    assert len(await walk(status="inactive")) == 23
    assert len(await walk(status="active")) == 230 - 46
    assert await walk(search="agent 017") == ["SP-2026-000017"]
    assert await walk(search="sp-2026-00001") == [f"SP-2026-{i:06d}" for i in range(19, 9, -1)]
    assert await walk(search="%") == []
    assert await store.known("p1", ["SP-2026-000001", "SP-9999-ZZZZZZ"]) == {"SP-2026-000001"}


async def test_a_pass_of_another_project_is_not_known(store: PassStore) -> None:
    created, _ = await store.create("p1", spec(), "admin")
    assert await store.known("p2", [created.pass_id]) == set()
    assert (await store.by_pass_id(created.pass_id)) is not None
    assert (await store.by_pass_id(f"SP-2026-{uuid.uuid4().hex[:6].upper()}")) is None


async def test_another_process_s_change_reaches_the_token_endpoint_within_a_second(
    store: PassStore,
) -> None:
    """Two stores on one database stand for two API processes: the credentials cache of
    one sees a regeneration made by the other within its one-second lifetime."""
    from sentinel_usage.passes.oauth import CredentialsCache

    created, first = await store.create("p1", spec(), "admin")
    other = PassStore(create_engine(str(store.engine.url.render_as_string(False))))
    try:
        cache = CredentialsCache(store, ttl=0.5)
        cached = await cache.get(created.client_id)
        assert cached is not None
        assert secret_matches(first.secret, cached[1])
        _, second = await other.regenerate("p1", created.pass_id, "admin")
        deadline = asyncio.get_running_loop().time() + 1.0
        while True:
            found = await cache.get(created.client_id)
            assert found is not None
            if secret_matches(second.secret, found[1]):
                break
            assert asyncio.get_running_loop().time() < deadline, "stale after 1 s"
            await asyncio.sleep(0.05)
        await store.regenerate("p1", created.pass_id, "admin")  # this process: at once
        found = await cache.get(created.client_id)
        assert found is not None
        assert not secret_matches(second.secret, found[1])
    finally:
        await other.close()


async def test_a_generated_pass_id_already_taken_is_drawn_again(
    store: PassStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six random characters collide now and then (9% among 20,000 passes): the caller,
    who chose no id, gets a pass, not a 409. An id the caller chose stays a 409."""
    taken = f"SP-2026-{uuid.uuid4().hex[:6].upper()}"
    await store.create("proj-a", spec(pass_id=taken), "admin")
    draws = iter([taken, taken, "SP-2026-FRESH1"])
    monkeypatch.setattr(store_module, "new_pass_id", lambda today: next(draws))
    created, _ = await store.create("proj-b", spec(), "admin")
    assert created.pass_id == "SP-2026-FRESH1"
    with pytest.raises(PassConflictError, match="is taken"):
        await store.create("proj-b", spec(pass_id=taken), "admin")
