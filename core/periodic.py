"""Background work: periodic bodies that cannot stop the process (DESIGN invariant 8),
and stopping a background task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter

log = structlog.get_logger(__name__)

PERIODIC_FAILURES = Counter(
    "sentinel_periodic_failures",
    "Runs of a periodic task (timer, metrics helper, notifier) that raised; it runs again.",
    labelnames=["task"],
)


def periodic(name: str, run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """`run` as a timer body that cannot stop the process: an error is logged with its
    traceback and counted (`sentinel_periodic_failures_total`), and the timer runs it
    again at its next tick. (A None high-water mark in the lag metric once raised from
    a timer and took ingest and API down with it, issue 11.)"""

    async def guarded() -> None:
        try:
            await run()
        except Exception:  # a timer's failure is its own, never the process's
            PERIODIC_FAILURES.labels(task=name).inc()
            log.exception("periodic_task_failed", task=name)

    guarded.__name__ = guarded.__qualname__ = name
    return guarded


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` (if any) and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
