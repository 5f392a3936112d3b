"""Tumbling windows over event time: pure arithmetic, no clock of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_start(at: datetime, size: timedelta) -> datetime:
    """Start of the tumbling window of `size` (aligned to the Unix epoch) holding `at`."""
    step = int(size.total_seconds() * 1000)
    millis = int((at - EPOCH) / timedelta(milliseconds=1))
    return EPOCH + timedelta(milliseconds=millis - millis % step)


def validate_window_size(seconds: int) -> int:
    """Windows must tile every hour of every time zone (offsets are multiples of 15 min)."""
    if seconds <= 0 or 900 % seconds:
        raise ValueError(f"window size must divide 900 s (15 min), got {seconds} s")
    return seconds
