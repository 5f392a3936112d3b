"""Analytics as coroutines: what the API reads from ClickHouse and records there.

The queries are blocking (clickhouse-connect is synchronous, chDB's client has no
async variant). Each call runs on a pool of its own, apart from asyncio's default
executor that the ingest journal writes through, so a burst of 10,000-row exports
cannot hold back an event's 202.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from sentinel_usage.analytics.activity import ActivityLogQuery
from sentinel_usage.analytics.alerts import AlertStore
from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.endpoints import EndpointQuery
from sentinel_usage.analytics.exports import ExportAudit
from sentinel_usage.analytics.migrate import pending
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.analytics.usage import UsageQuery
from sentinel_usage.core.windows import DEFAULT_TIERS, RollupTier

P = ParamSpec("P")
R = TypeVar("R")


class QueryThreads:
    """A bounded pool for blocking ClickHouse calls."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clickhouse")

    def wrap(self, blocking: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """`blocking` as a coroutine function run on this pool (with the caller's
        context variables, as asyncio.to_thread would)."""

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = functools.partial(blocking, *args, **kwargs)
            context = contextvars.copy_context()
            return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, bound)

        return call

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Analytics:
    """The API's reads and records. Every read takes a ProjectScope (see scope.py)."""

    def __init__(
        self,
        clickhouse: ClickHouse,
        tiers: Sequence[RollupTier] = DEFAULT_TIERS,
        workers: int = 4,
    ) -> None:
        self.threads = QueryThreads(workers)
        run = self.threads.wrap
        activity = ActivityLogQuery(clickhouse)
        usage = UsageQuery(clickhouse, tiers)
        audit = ExportAudit(clickhouse)

        def pass_exists(scope: ProjectScope, pass_id: str) -> bool:
            """Activity in the raw log, or rollups kept longer than it (a pass managed
            elsewhere, idle since the raw log's retention, still has its usage)."""
            return activity.pass_exists(scope, pass_id) or usage.has_usage(scope, pass_id)

        self.pass_exists = run(pass_exists)
        self.activity_page = run(activity.page)
        self.export_batch = run(activity.export_batch)
        self.usage = run(usage.usage)
        self.overview = run(usage.overview)
        self.pass_summaries = run(usage.passes)
        self.record_export = run(audit.record)
        self.exports = run(audit.list)
        self.alerts = run(AlertStore(clickhouse).list)
        self.endpoints = run(EndpointQuery(clickhouse).endpoints)
        self.pending_migrations = run(functools.partial(pending, clickhouse))
