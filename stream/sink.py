"""UsageSink: one batch of Kafka records in; raw rows, window rollups and dead letters out.

Contract: `process()` returns only when every new event of the batch is in the
activity log, every window it changed is in the rollups, and every invalid
record is acknowledged by the dead-letter topic; the caller acks (and so lets
Faust commit) the batch's offsets only after that. Any failure to write
(ClickHouse unreachable or refusing, the broker not acknowledging a dead letter
or the changelog) is retried with back-off while the stream waits
(back-pressure), `/readyz` says why and `sentinel_sink_retries_total` counts;
nothing is dead-lettered for it and the batch is never skipped. Only a record
that is itself invalid goes to the dead-letter topic. `process_until_done` adds
the last resort: an unforeseen error (a bug) is logged, counted and the same
batch tried again, so offsets never move past a batch that was not written.

Order, and why it is exact under redelivery and resends:
1. decode; drop repeats within the batch and events whose identity
   (project_id, event_id) the activity log already holds (resent, restamped, or
   redelivered after their insert): the first version accepted wins. Only what
   the EventIdFilter cannot rule out is looked up; the filter is fed after each
   insert, so a batch re-run after a failure finds its rows by lookup or, not
   finding them in the filter, writes them again (the table folds identical
   rows) and the window watermarks skip them;
2. apply the rest to their windows (a record at or below a window's offset
   watermark was applied before and is skipped), then flush the window
   changelog, so the windows are durable before the rows exist;
3. insert the new rows and write the changed windows to the rollups (side by side).
A crash before 3 replays the batch: step 1 lets the events through, step 2
skips them (the windows reach the rollups at the recovery write, `recover_once`).
A crash after the insert replays it too: step 1 drops them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from aiokafka.errors import KafkaError

from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.writer import ActivityLogWriter, identity_keys
from sentinel_usage.core.aggregate import WindowState, requests_mask
from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.core.errors import RetryLaterError
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.health import HEALTH, HealthBoard
from sentinel_usage.core.idfilter import EventIdFilter
from sentinel_usage.stream.budget import DeadLetterBudget, DeadLetterBudgetPolicy
from sentinel_usage.stream.decode import DeadLetter, DecodedBatch, SourceRecord, decode_records
from sentinel_usage.stream.metrics import (
    DEAD_LETTERS,
    DLQ_BUDGET_EXCEEDED,
    DLQ_SHARE,
    DUPLICATES_DROPPED,
    EVENTS_WRITTEN,
    SINK_BATCH_SECONDS,
    SINK_FAILURES,
    SINK_RETRIES,
    WINDOWS_WRITTEN,
    PassMetrics,
)
from sentinel_usage.stream.rollup_keys import RollupKeys
from sentinel_usage.stream.windows import UsageWindows

log = structlog.get_logger(__name__)

SendDeadLetter = Callable[[DeadLetter], Awaitable[None]]
FlushChangelog = Callable[[], Awaitable[None]]
T = TypeVar("T")
ID_REFRESH_MARGIN = timedelta(seconds=5)  # rows become visible a little after their clock

# "Retry later" (back-pressure): the write did not happen and may succeed when the fault
# clears. The broker client's errors are aiokafka's own; ours are RetryLaterError.
# "Invalid record" (InvalidRecordError) never reaches here: decode makes it a DeadLetter.
RETRYABLE: tuple[type[BaseException], ...] = (RetryLaterError, KafkaError)


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 0.1
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2**attempt))


@dataclass(frozen=True)
class SinkPolicy:
    retry: RetryPolicy = RetryPolicy()
    evict_every_seconds: float = 5.0
    # How far back the index of the rollups' windows reaches (stream/rollup_keys.py): an
    # event's window older than that, not in the store, is looked up in the rollups.
    rollup_keys_span: timedelta = timedelta(hours=2)
    # With other workers writing to the same log (production), how often ids they
    # wrote are added to this worker's filter; None when it is the only writer.
    id_refresh_seconds: float | None = 30.0
    dead_letter_budget: DeadLetterBudgetPolicy = field(default_factory=DeadLetterBudgetPolicy)


@dataclass(frozen=True, eq=False)
class PreparedBatch:
    """A batch decoded, deduplicated and applied to its windows: what `finish` writes."""

    decoded: DecodedBatch
    fresh: pa.Table  # the new events, to insert
    changed: list[WindowState]  # the windows they changed, to write to the rollups
    started: float  # time.perf_counter() when its preparation began

    @cached_property
    def identities(self) -> pa.Array:
        """`fresh`'s identity keys (analytics.writer.identity_keys)."""
        return identity_keys(self.fresh)


@dataclass(eq=False)
class UsageSink:
    """The steps of the module docstring, over injected stores, in one worker."""

    writer: ActivityLogWriter
    rollups: RollupStore
    windows: UsageWindows
    send_dead_letter: SendDeadLetter
    flush_changelog: FlushChangelog
    validator: EventValidator
    policy: SinkPolicy = SinkPolicy()
    clock: Clock = SYSTEM_CLOCK
    pass_metrics: PassMetrics = field(default_factory=PassMetrics)
    health: HealthBoard = HEALTH
    # What the sink learns as it runs: the ids the log holds, when they were read.
    _ids: EventIdFilter | None = field(default=None, init=False)
    _ids_refreshed: float = field(default=0.0, init=False)
    _ids_loaded_from: datetime = field(default=datetime.min.replace(tzinfo=UTC), init=False)
    _recovered: bool = field(default=False, init=False)
    _last_eviction: float = field(default=0.0, init=False)
    _in_flight: list[PreparedBatch] = field(default_factory=list, init=False)
    _rollup_keys: RollupKeys = field(
        default_factory=lambda: RollupKeys(datetime.max.replace(tzinfo=UTC)), init=False
    )  # until recover_once loads it: every window may be in the rollups

    def __post_init__(self) -> None:
        self._budget = DeadLetterBudget(self.policy.dead_letter_budget)

    async def process_until_done(self, records: Sequence[SourceRecord]) -> int:
        """`process`, tried again after an unforeseen error until it succeeds (see
        `prepare_until_done`)."""
        return await self.finish_until_done(await self.prepare_until_done(records))

    async def prepare_until_done(self, records: Sequence[SourceRecord]) -> PreparedBatch:
        """`prepare`, tried again after an unforeseen error until it succeeds.

        Re-running a batch is safe by the order of writes (module docstring). An
        error here is a bug, not a fault of the data (records were validated) nor
        of a dependency (retried inside): the stream stops on this batch, says so
        in `/readyz`, the log and `sentinel_sink_failures_total`, rather than skip
        it; it resumes by itself if the cause was transient after all."""
        return await self._until_done(lambda again: self.prepare(records))

    async def decode_until_done(self, records: Sequence[SourceRecord]) -> DecodedBatch:
        """`decode`, tried again after an unforeseen error (as `prepare_until_done`)."""
        return await self._until_done(lambda again: self.decode(records))

    async def prepare_decoded_until_done(
        self, decoded: DecodedBatch, started: float
    ) -> PreparedBatch:
        """`prepare_decoded`, tried again after an unforeseen error (as
        `prepare_until_done`)."""
        return await self._until_done(lambda again: self.prepare_decoded(decoded, started))

    async def finish_until_done(self, prepared: PreparedBatch) -> int:
        """`finish`, tried again after an unforeseen error until it succeeds; a second
        attempt first looks for the rows the first one may have inserted."""
        return await self._until_done(lambda again: self.finish(prepared, again=again))

    async def _until_done(self, step: Callable[[bool], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                result = await step(attempt > 0)
            except Exception as exc:  # last resort: never skip a batch (see above)
                delay = self.policy.retry.delay(attempt)
                SINK_FAILURES.labels(error=type(exc).__name__).inc()
                self.health.report("sink", f"batch failing, retried in {delay:g} s: {exc!r}")
                log.exception("sink_batch_failed", attempt=attempt, retry_in=delay)
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if attempt:
                self.health.report("sink", None)
            return result

    async def process(self, records: Sequence[SourceRecord]) -> int:
        """Handle one batch, step by step in the order the module docstring explains;
        return the number of new events written. A write that fails for a dependency
        (RETRYABLE: back-pressure) is retried inside its step; an invalid record is a
        DeadLetter of `decode`, sent by `dead_letter` after the writes. Each step is a
        method of its own, tested alone (tests/integration/test_sink_steps.py); only
        this order makes them exact under redelivery."""
        return await self.finish(await self.prepare(records))

    async def prepare(self, records: Sequence[SourceRecord]) -> PreparedBatch:
        """Steps 1 and 2: decode, drop what is known, apply to the windows (changelog
        flushed). The batch is then in flight until `finish` wrote it; the next batch
        may be prepared meanwhile (stream/pipeline.py): it finds this one's events
        among the known ones, and eviction leaves this one's windows in the store."""
        started = time.perf_counter()
        return await self.prepare_decoded(await self.decode(records), started)

    async def prepare_decoded(self, decoded: DecodedBatch, started: float) -> PreparedBatch:
        """`prepare` of a batch already decoded (decoding is pure: the pipeline decodes
        the next batch while this one is prepared); `started`: its perf_counter()."""
        await self.recover_once()
        fresh = await self.drop_known(decoded.table)
        changed = await self.window(fresh)
        prepared = PreparedBatch(decoded, fresh, changed, started)
        self._maybe_evict(prepared)
        # Last: a prepare tried again after an error must not find its own first try
        # in flight (it would drop every event as already known).
        self._in_flight.append(prepared)
        return prepared

    async def finish(self, prepared: PreparedBatch, again: bool = False) -> int:
        """Step 3, then the dead letters; return the number of new events written.
        `again`: an attempt before may have inserted the rows (they are looked up)."""
        fresh, changed = prepared.fresh, prepared.changed
        await self.persist(fresh, changed, again=again)
        await self.dead_letter(prepared.decoded)
        if prepared in self._in_flight:
            self._in_flight.remove(prepared)
        self._observe(fresh)
        EVENTS_WRITTEN.inc(fresh.num_rows)
        WINDOWS_WRITTEN.inc(len(changed))
        SINK_BATCH_SECONDS.observe(time.perf_counter() - prepared.started)
        return int(fresh.num_rows)

    # -- the steps -----------------------------------------------------------------

    async def recover_once(self) -> None:
        """Windows recovered from the changelog may not have reached the rollups before
        a crash: at the first batch after partitions were assigned (Faust has recovered
        their windows by then), write them all once. Eviction relies on it: it drops a
        window without writing it. Then the index of the rollups' windows is read
        (stream/rollup_keys.py): what was written before the partitions came here."""
        if not self._recovered:
            await self._retry(self.rollups.write, self.windows.resident())
            since = self.clock.now() - self.policy.rollup_keys_span
            keys = await self._retry(self.rollups.keys_ending_from, since)
            self._rollup_keys = RollupKeys(since, keys)
            log.info("rollup_keys_loaded", keys=len(keys), since=since.isoformat())
            self._recovered = True

    async def decode(self, records: Sequence[SourceRecord]) -> DecodedBatch:
        # Decoding is most of the CPU of a batch and touches no shared state: in a
        # thread, so that the event loop (and the API served from it in `up`) is not
        # held for the whole batch.
        return await asyncio.to_thread(decode_records, list(records), self.validator)

    async def drop_known(self, events: pa.Table) -> pa.Table:
        """`events` without repeats within the batch (the first is kept) and without
        those whose identity (project_id, event_id) the activity log already holds,
        whatever their other fields: the first version accepted wins."""
        total = events.num_rows
        # The batches in flight as they are now, before any await: one written during
        # the lookup below leaves `_in_flight`, and its rows may be missing from an
        # answer the log gave before they were inserted (a restamped resend of an event
        # of the batch just written was kept, once in ~10^6 events under full load).
        in_flight = list(self._in_flight)
        seen = await self._seen_ids(in_flight)
        slots = seen.slots(events.column("project_id"), events.column("event_id"))
        # Identity keys are built only when needed: repeats share their slot, so distinct
        # slots mean no repeats (Arrow's count_distinct of the ids was a tenth of the
        # event loop's time in the stream bench; a sort of 64-bit words is not).
        if len(np.unique(slots.fingerprints())) < total:
            keys = pc.dictionary_encode(identity_keys(events)).indices.to_numpy()
            first = np.unique(keys, return_index=True)[1]
            first.sort()
            events, slots = events.take(pa.array(first)), slots.subset(first)
        maybe = seen.holds(slots)
        if maybe.any():  # only what the filter cannot rule out is looked up
            candidates = events.filter(pa.array(maybe))
            stored = await self._retry(self.writer.existing, candidates)
            new = ~_among(events, stored, *_in_flight_among(candidates, in_flight))
            events, slots = events.filter(pa.array(new)), slots.subset(new)
        # Fed now, not after the insert: the next batch may be prepared before this
        # one is written, and must find these ids (in flight, if not yet in the log).
        seen.insert(slots)
        DUPLICATES_DROPPED.inc(total - events.num_rows)
        return events

    async def window(self, fresh: pa.Table) -> list[WindowState]:
        """Apply the events to their windows (loading those not resident from the
        rollups), then flush the changelog: the windows are durable before the rows."""
        assigned = self.windows.assign(fresh)
        known = self._rollup_keys
        lookups = [key for key in self.windows.missing(assigned.keys) if known.may_hold(key)]
        loaded = await self._retry(self.rollups.load, lookups) if lookups else {}
        changed = self.windows.apply(assigned, loaded, self.clock.now())
        known.add(state.key for state in changed)
        await self._retry_async("changelog flush", self.flush_changelog)
        return changed

    async def persist(
        self, fresh: pa.Table, changed: list[WindowState], again: bool = False
    ) -> None:
        """The rows and the windows they changed, side by side (each in a thread; on
        connections of their own, stream/app.py, they overlap in ClickHouse). Either
        order is exact: the windows are durable in the changelog already, and a batch
        replayed after a crash between the two finds its rows by drop_known and its
        records below the windows' watermarks. `again`: see `_insert_once`."""
        await asyncio.gather(
            self._retry_async("activity log insert", self._insert_once(fresh, again)),
            self._retry(self.rollups.write, changed),
        )

    def _insert_once(self, fresh: pa.Table, again: bool = False) -> Callable[[], Awaitable[int]]:
        """An insert of `fresh` to retry: an attempt after a failed one (or any, `again`)
        first drops the rows the failure may have written all the same (a timeout after
        the server took them). The log would fold them, but the endpoint rollup's view
        (migration 0008) would count them twice: chDB 26.9 feeds a view the block that
        the log's own insert deduplication skipped."""
        attempts = 1 if again else 0

        def insert() -> int:
            nonlocal attempts
            attempts += 1
            rows = fresh if attempts == 1 else _without(fresh, self.writer.existing(fresh))
            return self.writer.write(rows)

        return lambda: asyncio.to_thread(insert)

    async def dead_letter(self, decoded: DecodedBatch) -> None:
        for dead in decoded.dead_letters:
            await self._send_one_dead_letter(dead)
        self._account_dead_letters(decoded)

    def _observe(self, events: pa.Table) -> None:
        if events.num_rows == 0:
            return
        requests = events.filter(requests_mask(events.column("activity_type")))
        counts = (
            requests.append_column(
                "error", pc.cast(pc.invert(requests.column("success")), pa.int64())
            )
            .group_by(["project_id", "pass_id"])
            .aggregate([("error", "count"), ("error", "sum")])
        )
        now = self.clock.now()
        for project_id, pass_id, requested, errors in zip(
            *(counts.column(c).to_pylist()
              for c in ("project_id", "pass_id", "error_count", "error_sum")),
            strict=True,
        ):  # fmt: skip
            self.pass_metrics.observe(project_id, pass_id, requested, errors, now)

    def partitions_assigned(self) -> None:
        """Partitions moved here: their recovered windows are written at the next batch
        (`recover_once`), and, with other workers writing, the id filter is topped up
        before it. Their previous owner may have changed windows and died before writing
        them to the rollups; or inserted rows and died before its commit: the filter
        would not know those ids until its next top-up, the rows would be inserted
        again, and the endpoint rollup's view (migration 0008) count them twice (the
        log folds them)."""
        self._recovered = False
        if self.policy.id_refresh_seconds is not None:
            self._ids_refreshed = float("-inf")

    async def _seen_ids(self, in_flight: Sequence[PreparedBatch]) -> EventIdFilter:
        """The filter of every identity in the log: built at the first batch (and
        again when it outgrows its size), then fed by each insert; with other
        workers writing too, topped up every `id_refresh_seconds`. `in_flight`: the
        batches in flight before the load began (one written since is in the log by
        then, or among these)."""
        now = time.monotonic()
        refresh = self.policy.id_refresh_seconds
        if self._ids is None or self._ids.full:
            self._ids = await self._retry(self._load_ids)
            self._ids_refreshed = now
            for batch in in_flight:  # perhaps not in the log yet
                self._ids.add(batch.fresh.column("project_id"), batch.fresh.column("event_id"))
        elif refresh is not None and now - self._ids_refreshed >= refresh:
            await self._retry(self._top_up_ids, self._ids)
            self._ids_refreshed = now
        return self._ids

    def _load_ids(self) -> EventIdFilter:
        """Blocking: a filter of every identity in the log, streamed block by block."""
        self._ids_loaded_from = self.writer.clock()
        ids = EventIdFilter(capacity=2 * self.writer.count())
        for block in self.writer.identities():
            ids.add(block.column("project_id"), block.column("event_id"))
        log.info("event_id_filter_loaded", identities=ids.count, capacity=ids.capacity)
        return ids

    def _top_up_ids(self, ids: EventIdFilter) -> None:
        """Blocking: add what was ingested since the last load or top-up (other workers'
        rows; this worker's own are added again, harmlessly), block by block."""
        since = self._ids_loaded_from - ID_REFRESH_MARGIN
        self._ids_loaded_from = self.writer.clock()
        for block in self.writer.identities(since):
            ids.add(block.column("project_id"), block.column("event_id"))

    def _account_dead_letters(self, decoded: DecodedBatch) -> None:
        valid = decoded.table.column("source_partition").to_numpy()
        dead = [letter.source.partition for letter in decoded.dead_letters]
        for partition in {*valid.tolist(), *dead}:
            bad = dead.count(partition)
            share = self._budget.observe(partition, int((valid == partition).sum()) + bad, bad)
            DLQ_SHARE.labels(partition=str(partition)).set(share)
            DLQ_BUDGET_EXCEEDED.labels(partition=str(partition)).set(
                int(self._budget.exceeded(share))
            )

    async def _send_one_dead_letter(self, dead: DeadLetter) -> None:
        await self._retry_async("dead letter", lambda: self.send_dead_letter(dead))
        DEAD_LETTERS.labels(reason=dead.reason).inc()
        log.warning(
            "dead_lettered",
            reason=dead.reason,
            partition=dead.source.partition,
            offset=dead.source.offset,
            index=dead.index,
            errors=dead.errors,
        )

    def _maybe_evict(self, preparing: PreparedBatch) -> None:
        """Drop the windows past the resident horizon from the store. Their tombstones go
        with the next batch's changelog flush: one lost in a crash leaves the window in
        the store, and it is evicted again."""
        now = time.monotonic()
        if now - self._last_eviction < self.policy.evict_every_seconds:
            return
        self._last_eviction = now
        self._rollup_keys.forget_before(self.clock.now() - self.policy.rollup_keys_span)
        # A window of a batch in flight is not in the rollups yet: reloaded from them,
        # it would miss that batch.
        batches = [*self._in_flight, preparing]
        unwritten = {state.key for batch in batches for state in batch.changed}
        old = [s for s in self.windows.evictable(self.clock.now()) if s.key not in unwritten]
        if old:
            self.windows.evict(old)
            log.info("windows_evicted", count=len(old))

    async def _retry(self, call: Callable[..., T], *args: object) -> T:
        """A blocking ClickHouse call, in a thread, retried (see `_retry_async`)."""
        name = getattr(call, "__qualname__", "clickhouse call")
        return await self._retry_async(name, lambda: asyncio.to_thread(call, *args))

    async def _retry_async(self, what: str, attempt_once: Callable[[], Awaitable[T]]) -> T:
        """Await `attempt_once()` until it succeeds; a RETRYABLE failure is counted,
        shown by `/readyz` while it lasts and retried with back-off."""
        attempt = 0
        while True:
            try:
                result = await attempt_once()
            except RETRYABLE as exc:
                delay = self.policy.retry.delay(attempt)
                SINK_RETRIES.inc()
                self.health.report("sink", f"{what} failing, retrying in {delay:g} s: {exc}")
                log.warning("sink_retry", what=what, attempt=attempt, delay=delay, error=str(exc))
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if attempt:
                self.health.report("sink", None)
                log.info("sink_recovered", what=what, attempts=attempt)
            return result


def _without(events: pa.Table, *known: pa.Table) -> pa.Table:
    """`events` but those whose identity is among those of `known` (such as
    ActivityLogWriter.existing's answer)."""
    return events.filter(pa.array(~_among(events, *known)))


def _in_flight_among(events: pa.Table, in_flight: Sequence[PreparedBatch]) -> list[pa.Table]:
    """The events among `events` of the batches `in_flight` (prepared, not yet written)."""
    keys = identity_keys(events)
    return [events.filter(pc.is_in(keys, batch.identities)) for batch in in_flight]


def _among(events: pa.Table, *known: pa.Table) -> np.ndarray:
    """Per row of `events`: whether its identity is among those of `known`."""
    keys = [identity_keys(table) for table in known if table.num_rows]
    if not keys:
        return np.zeros(events.num_rows, dtype=bool)
    found = pc.is_in(identity_keys(events), value_set=pa.concat_arrays(keys))
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
