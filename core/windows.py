"""Tumbling windows over event time: pure arithmetic, no clock of its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix_millis(at: datetime) -> int:
    """`at` (timezone-aware) in whole milliseconds since the Unix epoch."""
    return (at - EPOCH) // timedelta(milliseconds=1)


def window_start(at: datetime, size: timedelta) -> datetime:
    """Start of the tumbling window of `size` (aligned to the Unix epoch) holding `at`."""
    step = int(size.total_seconds() * 1000)
    millis = unix_millis(at)
    return EPOCH + timedelta(milliseconds=millis - millis % step)


def window_ceil(at: datetime, size: timedelta) -> datetime:
    """The first window boundary at or after `at` (`at` itself when it is one)."""
    start = window_start(at, size)
    return start if start == at else start + size


def validate_window_size(seconds: int) -> int:
    """Windows must tile every hour of every time zone (offsets are multiples of 15 min)."""
    if seconds <= 0 or 900 % seconds:
        raise ValueError(f"window size must divide 900 s (15 min), got {seconds} s")
    return seconds


# The rollup tiers: the stream's own window (SENTINEL_WINDOW_SECONDS, a minute by
# default) in `usage_rollups`, and two coarser ones beside it, each with its own
# retention. A quarter of an hour rather than an hour: every IANA zone's offset is a
# multiple of 15 minutes (Asia/Kolkata +5:30, Asia/Kathmandu +5:45), so the hours and
# midnights of every zone fall on quarter-hour boundaries and a quarter-hour tier answers
# any zone's hourly and daily buckets exactly, for as long as it is kept. The day tier
# (UTC days) answers UTC midnights and lifetime totals.
FINEST_TABLE = "usage_rollups"
ROLLUP_WRITES = "usage_rollup_writes"  # what the worker inserts into: routed to the tiers
QUARTER_HOUR = 900
DAY = 86_400
COARSE_TABLES = {QUARTER_HOUR: "usage_rollups_15m", DAY: "usage_rollups_1d"}


@dataclass(frozen=True)
class RollupTier:
    """One granularity of the rollups: its window, and how long its rows are kept."""

    seconds: int
    retention_days: int
    table: str

    @property
    def size(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def held_from(self, now: datetime) -> datetime:
        """The first window this tier is sure to hold at `now`: its rows expire once
        `window_start + retention` has passed (the table's TTL)."""
        oldest = now - timedelta(days=self.retention_days)
        start = window_start(oldest, self.size)
        return start if start == oldest else start + self.size

    def rows_held(self) -> int:
        """Rows a pass active in every window holds at steady state."""
        return self.retention_days * DAY // self.seconds


def rollup_tiers(finest_seconds: int, finest_days: int, quarter_days: int, day_days: int
                 ) -> tuple[RollupTier, ...]:  # fmt: skip
    """The tiers, finest first (a finest window of 15 minutes is the quarter tier). The
    writes reach each tier's table by its window (analytics migration 0007)."""
    if finest_seconds == QUARTER_HOUR:  # the stream's window is the quarter tier's
        tiers = [
            RollupTier(QUARTER_HOUR, max(finest_days, quarter_days), COARSE_TABLES[QUARTER_HOUR])
        ]
    else:
        tiers = [
            RollupTier(finest_seconds, finest_days, FINEST_TABLE),
            RollupTier(QUARTER_HOUR, quarter_days, COARSE_TABLES[QUARTER_HOUR]),
        ]
    tiers.append(RollupTier(DAY, day_days, COARSE_TABLES[DAY]))
    return tuple(tiers)


# The defaults of SENTINEL_WINDOW_SECONDS and the tiers' retentions (core/settings.py).
DEFAULT_TIERS: tuple[RollupTier, ...] = rollup_tiers(60, 3, 90, 400)
