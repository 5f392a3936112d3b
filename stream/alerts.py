"""ErrorRateEvaluator: every `rule.every`, each pass's error rate over the trailing
window, from the windows the worker holds; transitions are published through an outbox.

The trailing window is the current tumbling window and those before it, up to
`rule.window` in all. Publishing order (at least once, never a second
incident): the new state, with the event to publish in its outbox, is written
to the alert table and the changelog flushed; the event is published; the
outbox is cleared. After a restart, what is still in an outbox is published
again with the same alert_id, and every destination treats (alert_id, state)
as idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sentinel_usage.core.alerts import AlertEvent, ErrorRateRule, PassAlertState
from sentinel_usage.core.windows import window_start
from sentinel_usage.stream.windows import UsageWindows, WindowStore

Publish = Callable[[list[AlertEvent]], Awaitable[None]]
Flush = Callable[[], Awaitable[None]]
PassKey = tuple[str, str]


@dataclass(eq=False)
class ErrorRateEvaluator:
    """The alert rule over the open windows, publishing each pass's state changes."""

    rule: ErrorRateRule
    windows: UsageWindows
    window_size: timedelta
    states: WindowStore
    publish: Publish
    flush: Flush
    _stored: set[PassKey] = field(default_factory=set, init=False)

    async def evaluate(self, now: datetime) -> list[PassAlertState]:
        """One round over every pass with recent windows or an open alert; returns the
        passes whose alert is firing afterwards."""
        current = window_start(now, self.window_size)
        first = current - (self.rule.window - self.window_size)
        totals: dict[PassKey, tuple[int, int]] = {}
        partitions: dict[PassKey, int] = {}
        for window in self.windows.resident(self.window_size // timedelta(seconds=1), first):
            key = (window.project_id, window.pass_id)
            partitions[key] = window.source_partition
            if window.window_start <= current:
                requests, errors = totals.get(key, (0, 0))
                totals[key] = (
                    requests + window.aggregate.total_requests,
                    errors + window.aggregate.error_count,
                )
        states = self._load()
        self._stored = set(states)
        changed: list[PassAlertState] = []
        for key in set(totals) | {k for k, s in states.items() if s.firing or s.outbox}:
            state = states.setdefault(key, PassAlertState(*key))
            before = state.to_bytes()
            state.partition = partitions.get(key, state.partition)
            requests, errors = totals.get(key, (0, 0))
            event = state.evaluate(
                self.rule, requests, errors, first, current + self.window_size, now
            )
            if event is not None:
                state.outbox = event
            if state.to_bytes() != before:
                changed.append(state)
        # A pass that is not firing and has nothing to publish needs no state: its
        # entry goes (kept, every pass ever seen stayed in the table for good).
        changed += [s for k, s in states.items() if s.quiet and k in self._stored]
        await self._save(changed)

        waiting = [s for s in states.values() if s.outbox is not None]
        if waiting:
            await self.publish([s.outbox for s in waiting if s.outbox is not None])
            for state in waiting:
                state.outbox = None
            await self._save(waiting)
        return [s for s in states.values() if s.firing]

    def _load(self) -> dict[PassKey, PassAlertState]:
        loaded = (PassAlertState.from_bytes(v) for v in self.states.values())
        return {(s.project_id, s.pass_id): s for s in loaded}

    async def _save(self, states: list[PassAlertState]) -> None:
        written = False
        for state in states:
            key = f"{state.project_id}\x1f{state.pass_id}".encode()
            if not state.quiet:
                self.states.put(key, state.to_bytes(), state.partition)
                self._stored.add((state.project_id, state.pass_id))
            elif (state.project_id, state.pass_id) in self._stored:
                self.states.delete(key, state.partition)
                self._stored.discard((state.project_id, state.pass_id))
            else:
                continue
            written = True
        if written:
            await self.flush()
