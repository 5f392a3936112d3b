"""TierPlan: which rollup tier answers which part of a range (core/windows.py).

Each bucket is answered by the coarsest tier whose windows fit inside it and that still
holds them, and by finer tiers only at its ragged edges: a UTC-day bucket by one daily
row, a bucket of any other zone's day by 96 quarter-hour rows (every zone's midnights
are quarter-hour boundaries), the last day of the pass list by the window's own tier.
What no tier holds any more is `uncovered`: a caller says so (`partial`), never
answering a silently smaller number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from sentinel_usage.core.windows import EPOCH, RollupTier, window_ceil, window_start


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Retention:
    """How far back the tiers answer buckets like these: `days` of the tier that holds
    them longest; `partial` when part of the range lies before (`held_from`)."""

    days: int
    held_from: datetime
    partial: bool


@dataclass
class TierPlan:
    spans: dict[RollupTier, list[Span]] = field(default_factory=dict)
    uncovered: list[Span] = field(default_factory=list)


def plan(boundaries: Sequence[datetime], tiers: Sequence[RollupTier], now: datetime) -> TierPlan:
    """The windows answering each bucket [boundaries[i], boundaries[i + 1]) exactly:
    per tier, spans of window starts (adjacent ones joined); what none holds, uncovered."""
    coarsest_first = sorted(tiers, key=lambda t: -t.seconds)
    result = TierPlan()
    for start, end in pairwise(boundaries):
        _cover(start, end, coarsest_first, now, result)
    for tier, spans in result.spans.items():
        result.spans[tier] = _joined(spans)
    result.uncovered = _joined(result.uncovered)
    return result


def retention(boundaries: Sequence[datetime], tiers: Sequence[RollupTier], now: datetime,
              covered: TierPlan) -> Retention:  # fmt: skip
    """The retention that applies to buckets with these boundaries."""
    aligned = [t for t in tiers if all((b - EPOCH) % t.size == timedelta(0) for b in boundaries)]
    longest = max(aligned or tiers, key=lambda t: t.retention_days)
    held_from = longest.held_from(now)
    partial = boundaries[0] < held_from or any(s.start < now for s in covered.uncovered)
    return Retention(longest.retention_days, held_from, partial)


def _cover(start: datetime, end: datetime, tiers: Sequence[RollupTier], now: datetime,
           result: TierPlan) -> None:  # fmt: skip
    if start >= end:
        return
    if not tiers:
        result.uncovered.append(Span(start, end))
        return
    tier, finer = tiers[0], tiers[1:]
    first = max(window_ceil(start, tier.size), tier.held_from(now))
    last = window_start(end, tier.size)
    if first >= last:
        _cover(start, end, finer, now, result)
        return
    result.spans.setdefault(tier, []).append(Span(first, last))
    _cover(start, first, finer, now, result)
    _cover(last, end, finer, now, result)


def _joined(spans: list[Span]) -> list[Span]:
    joined: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if joined and joined[-1].end == span.start:
            joined[-1] = Span(joined[-1].start, span.end)
        else:
            joined.append(span)
    return joined
