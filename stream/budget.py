"""DeadLetterBudget: the share of a partition's recent records that were dead-lettered.

A producer sending only garbage, or a bad deploy of ours, dead-letters without
limit and silently; Arroyo stops at a DLQ limit. We keep the stream flowing (a bad
record must never block good ones) and say it loudly instead: per partition,
`sentinel_dlq_share` over the last `records` records and
`sentinel_dlq_budget_exceeded` when it is above `share`, which the
`SentinelDeadLettersHigh` rule alerts on. Pure: counts in, figures out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeadLetterBudgetPolicy:
    share: float = 0.1
    records: int = 1000  # how many recent records the share is over


@dataclass
class _Recent:
    batches: deque[tuple[int, int]] = field(default_factory=deque)  # (records, dead)
    records: int = 0
    dead: int = 0


class DeadLetterBudget:
    def __init__(self, policy: DeadLetterBudgetPolicy = DeadLetterBudgetPolicy()) -> None:
        self.policy = policy
        self._partitions: dict[int, _Recent] = {}

    def observe(self, partition: int, records: int, dead: int) -> float:
        """Add a batch's counts for `partition` (records includes the dead ones);
        return the dead share over its recent records."""
        recent = self._partitions.setdefault(partition, _Recent())
        recent.batches.append((records, dead))
        recent.records += records
        recent.dead += dead
        while (
            len(recent.batches) > 1 and recent.records - recent.batches[0][0] >= self.policy.records
        ):
            old_records, old_dead = recent.batches.popleft()
            recent.records -= old_records
            recent.dead -= old_dead
        return recent.dead / recent.records if recent.records else 0.0

    def exceeded(self, share: float) -> bool:
        return share > self.policy.share
