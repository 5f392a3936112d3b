"""IngestJournal: the embedded mode's write-ahead log of acknowledged events.

The embedded broker (Tansu, memory storage only) loses every message when it
stops, cleanly or not: a restart right after a `202` lost all 10,000 events not
yet in ClickHouse (issue 11). So in that mode the HTTP ingest appends each
request's envelopes here and answers `202` only once they are on disk (fsync;
concurrent requests share one fsync, a group commit) and acknowledged by the
broker. At the next start every segment still on disk is published again
(`replay`); the sink drops what ClickHouse already holds, so a replay is
exactly-once visible. A segment is deleted once it is sealed and the worker's
consumer group has committed past every message published from it in this
broker's life (`trim`); with an external Kafka none of this runs.

A segment is a file of records: u32 body length, u32 CRC-32 of the body, then
the body: u16 key length, the key (a pass id), u32 event count, the envelope. A torn record at
the end (a crash during its write: its fsync never returned, so nothing in it
was acknowledged) fails its length or CRC check and ends the segment.

Contract: `append` may block on the disk (in a thread) and raises JournalError
when the write or the fsync fails; nothing else here raises for I/O.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog

from sentinel_usage.core.errors import SentinelError
from sentinel_usage.core.wire import Envelope

log = structlog.get_logger(__name__)

_HEADER: Final = struct.Struct("<II")
_KEY_LENGTH: Final = struct.Struct("<H")
_EVENTS: Final = struct.Struct("<I")
SUFFIX: Final = ".journal"

# (partition, offset) of each message the broker acknowledged
Positions = Sequence[tuple[int, int]]
Publish = Callable[[Sequence[Envelope]], Awaitable[Positions]]


class JournalError(SentinelError):
    """The journal could not make a write durable: nothing was acknowledged."""


@dataclass
class Segment:
    """One journal file and what this process knows of its messages."""

    path: Path
    sealed: bool = False
    size: int = 0
    opened_at: float = field(default_factory=time.monotonic)
    appended: int = 0  # envelopes written to the file
    published: int = 0  # of those, acknowledged by this life's broker
    high: dict[int, int] = field(default_factory=dict)  # partition -> last offset published

    def consumed(self, committed: Mapping[int, int]) -> bool:
        """Every message of the segment published and committed by the consumer group
        (a committed offset is the next one to read)."""
        return (
            self.sealed
            and self.published == self.appended
            and all(committed.get(p, 0) > offset for p, offset in self.high.items())
        )


@dataclass(frozen=True)
class JournalPolicy:
    segment_bytes: int = 64 * 1024 * 1024
    # an active segment this old is sealed, so that it can be trimmed
    segment_seconds: float = 5.0
    replay_chunk: int = 200  # envelopes published per round trip at replay


class IngestJournal:
    def __init__(self, directory: Path, policy: JournalPolicy = JournalPolicy()) -> None:
        self._directory = directory
        self._policy = policy
        self._segments: list[Segment] = []
        self._active: Segment | None = None
        self._fd = -1
        self._pending: list[tuple[Sequence[Envelope], asyncio.Future[Segment]]] = []
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()  # one writer: appends, rotation and close
        self._writer: asyncio.Task[None] | None = None

    # -- life -------------------------------------------------------------------------

    async def open(self) -> None:
        """Start a new segment, after every one on disk (`replay` those first)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        on_disk = sorted(self._directory.glob(f"*{SUFFIX}"))
        last = int(on_disk[-1].stem) if on_disk else 0
        await asyncio.to_thread(self._start_segment, last + 1)
        self._writer = asyncio.create_task(self._write_pending(), name="ingest-journal")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        async with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        for _, future in self._pending:
            if not future.done():
                future.set_exception(JournalError("the journal was closed"))
        self._pending = []

    # -- the write path ------------------------------------------------------------------

    async def append(self, envelopes: Sequence[Envelope]) -> Segment:
        """Make `envelopes` durable; return the segment that holds them (report what the
        broker then acknowledged with `published`)."""
        if self._writer is None:
            raise JournalError("the journal is not open")
        future: asyncio.Future[Segment] = asyncio.get_running_loop().create_future()
        self._pending.append((envelopes, future))
        self._wakeup.set()
        return await future

    def published(self, segment: Segment, positions: Positions) -> None:
        """The broker acknowledged these messages of `segment` (one position each)."""
        segment.published += len(positions)
        for partition, offset in positions:
            if offset > segment.high.get(partition, -1):
                segment.high[partition] = offset

    async def _write_pending(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                envelopes = [envelope for item in batch for envelope in item[0]]
                async with self._lock:
                    try:
                        await self._rotate_if_due()
                        segment = self._active
                        assert segment is not None
                        # Encoding (copies and CRCs) in the thread too: off the event
                        # loop, which in `up` serves the API and runs the worker.
                        written = await asyncio.to_thread(_write_records, self._fd, envelopes)
                    except OSError as exc:
                        # Not acknowledged (the ingest answers 503); the next batch tries
                        # again. A partial write is cut off at replay by its CRC.
                        log.error("journal_write_failed", error=repr(exc))
                        for _, future in batch:
                            if not future.done():
                                future.set_exception(JournalError(f"journal write failed: {exc}"))
                        continue
                    segment.size += written
                    segment.appended += len(envelopes)
                for _, future in batch:
                    if not future.done():
                        future.set_result(segment)

    async def _rotate_if_due(self) -> None:
        active = self._active
        assert active is not None
        age = time.monotonic() - active.opened_at
        if active.size >= self._policy.segment_bytes or (
            active.size and age >= self._policy.segment_seconds
        ):
            await asyncio.to_thread(self._start_segment, int(active.path.stem) + 1)

    def _start_segment(self, number: int) -> None:
        path = self._directory / f"{number:012d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # before closing the old
        _fsync_directory(self._directory)
        if self._fd >= 0:
            os.close(self._fd)
        if self._active is not None:
            self._active.sealed = True
        self._fd = fd
        self._active = Segment(path)
        self._segments.append(self._active)

    # -- replay and trim ---------------------------------------------------------------

    async def replay(self, publish: Publish) -> int:
        """Publish every envelope of the segments on disk that this journal does not
        know yet (a previous run's); return the events. Call it before `open`.

        Their segments stay on disk until `trim` finds them consumed."""
        events = 0
        known = {segment.path for segment in self._segments}
        self._directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self._directory.glob(f"*{SUFFIX}")):
            if path in known:
                continue
            segment = Segment(path, sealed=True)
            self._segments.append(segment)
            chunk: list[Envelope] = []
            for envelope in await asyncio.to_thread(_read_all, path):
                chunk.append(envelope)
                if len(chunk) >= self._policy.replay_chunk:
                    events += await self._replay_chunk(segment, chunk, publish)
                    chunk = []
            events += await self._replay_chunk(segment, chunk, publish)
            log.info("journal_segment_replayed", path=str(path), envelopes=segment.appended)
        return events

    async def _replay_chunk(self, segment: Segment, chunk: list[Envelope], publish: Publish) -> int:
        if not chunk:
            return 0
        segment.appended += len(chunk)
        self.published(segment, await publish(chunk))
        return sum(e.event_count for e in chunk)

    async def trim(self, committed: Mapping[int, int]) -> int:
        """Seal the active segment if it is due, then delete every segment the consumer
        group has consumed; return how many were deleted."""
        async with self._lock:
            await self._rotate_if_due()
        done = [s for s in self._segments if s.consumed(committed)]
        for segment in done:
            await asyncio.to_thread(segment.path.unlink, True)
            self._segments.remove(segment)
        return len(done)

    def backlog(self) -> tuple[int, int]:
        """(segments on disk, bytes): what a restart would replay at most."""
        segments = [s for s in self._segments if s.path.exists()]
        return len(segments), sum(s.path.stat().st_size for s in segments)


def _record(envelope: Envelope) -> bytes:
    key = envelope.pass_id.encode()
    body = b"".join(
        (_KEY_LENGTH.pack(len(key)), key, _EVENTS.pack(envelope.event_count), envelope.payload)
    )
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def read_segment(path: Path) -> Iterator[Envelope]:
    """The envelopes of one segment, up to its first torn or corrupt record."""
    data = path.read_bytes()
    position = 0
    while position + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, position)
        body = data[position + _HEADER.size : position + _HEADER.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        (key_length,) = _KEY_LENGTH.unpack_from(body)
        start = _KEY_LENGTH.size + key_length
        key = body[_KEY_LENGTH.size : start].decode()
        (events,) = _EVENTS.unpack_from(body, start)
        yield Envelope(key, body[start + _EVENTS.size :], events)
        position += _HEADER.size + length
    if position < len(data):
        log.warning("journal_torn_tail", path=str(path), ignored_bytes=len(data) - position)


def _read_all(path: Path) -> list[Envelope]:
    return list(read_segment(path))


def _write_records(fd: int, envelopes: Sequence[Envelope]) -> int:
    """Append `envelopes` as records and flush them to disk; return the bytes written."""
    data = b"".join(_record(e) for e in envelopes)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fdatasync(fd)
    return len(data)


def _fsync_directory(directory: Path) -> None:
    """A new file's name is durable only once its directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
