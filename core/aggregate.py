"""UsageAggregate: the mergeable summary of a set of events (one window, or any range).

Definitions (the Usage tab's contract):
- a *request* is an `api_request` or an `error` event; `total_requests` counts them,
  `success_count` those that succeeded, `error_count` the rest;
- `token_generation` events are counted apart (`token_generations`, `token_failures`);
- latency (sum, count, sketch) and endpoint counts are over requests only.

No knowledge of Kafka, Faust or ClickHouse: initialise, add, merge, result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson

from sentinel_usage.core.events import UsageEvent
from sentinel_usage.core.sketch import LatencySketch
from sentinel_usage.core.windows import EPOCH

REQUEST_TYPES = frozenset({"api_request", "error"})


@dataclass
class UsageAggregate:
    total_requests: int = 0
    success_count: int = 0
    error_count: int = 0
    token_generations: int = 0
    token_failures: int = 0
    latency_sum_ms: float = 0.0
    latency_count: int = 0
    latency_max_ms: float = 0.0
    sketch: LatencySketch = field(default_factory=LatencySketch)
    endpoint_counts: dict[str, int] = field(default_factory=dict)
    last_event_at: datetime | None = None

    def add(self, event: UsageEvent) -> None:
        if self.last_event_at is None or event.started_at > self.last_event_at:
            self.last_event_at = event.started_at
        if event.activity_type not in REQUEST_TYPES:
            self.token_generations += 1
            self.token_failures += 0 if event.success else 1
            return
        self.total_requests += 1
        if event.success:
            self.success_count += 1
        else:
            self.error_count += 1
        self.latency_sum_ms += event.duration_ms
        self.latency_count += 1
        self.latency_max_ms = max(self.latency_max_ms, event.duration_ms)
        self.sketch.add(event.duration_ms)
        self.endpoint_counts[event.endpoint] = self.endpoint_counts.get(event.endpoint, 0) + 1

    def merge(self, other: UsageAggregate) -> UsageAggregate:
        endpoints = dict(self.endpoint_counts)
        for endpoint, count in other.endpoint_counts.items():
            endpoints[endpoint] = endpoints.get(endpoint, 0) + count
        last = [t for t in (self.last_event_at, other.last_event_at) if t is not None]
        return UsageAggregate(
            total_requests=self.total_requests + other.total_requests,
            success_count=self.success_count + other.success_count,
            error_count=self.error_count + other.error_count,
            token_generations=self.token_generations + other.token_generations,
            token_failures=self.token_failures + other.token_failures,
            latency_sum_ms=self.latency_sum_ms + other.latency_sum_ms,
            latency_count=self.latency_count + other.latency_count,
            latency_max_ms=max(self.latency_max_ms, other.latency_max_ms),
            sketch=self.sketch.merge(other.sketch),
            endpoint_counts=endpoints,
            last_event_at=max(last) if last else None,
        )

    # -- results ---------------------------------------------------------------

    @property
    def success_rate(self) -> float | None:
        return self.success_count / self.total_requests if self.total_requests else None

    @property
    def error_rate(self) -> float | None:
        return self.error_count / self.total_requests if self.total_requests else None

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_sum_ms / self.latency_count if self.latency_count else None

    @property
    def p95_latency_ms(self) -> float | None:
        return self.sketch.quantile(0.95)

    @property
    def unique_endpoints(self) -> int:
        return sum(1 for count in self.endpoint_counts.values() if count > 0)

    # -- state form (Faust table values) ----------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "tr": self.total_requests,
            "sc": self.success_count,
            "ec": self.error_count,
            "tg": self.token_generations,
            "tf": self.token_failures,
            "ls": self.latency_sum_ms,
            "lc": self.latency_count,
            "lm": self.latency_max_ms,
            "sz": self.sketch.zero_count,
            "sb": {str(k): v for k, v in self.sketch.bins.items()},
            "ep": self.endpoint_counts,
            "le": _millis(self.last_event_at) if self.last_event_at else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UsageAggregate:
        last = state.get("le")
        return cls(
            total_requests=state["tr"],
            success_count=state["sc"],
            error_count=state["ec"],
            token_generations=state["tg"],
            token_failures=state["tf"],
            latency_sum_ms=state["ls"],
            latency_count=state["lc"],
            latency_max_ms=state["lm"],
            sketch=LatencySketch({int(k): v for k, v in state["sb"].items()}, state["sz"]),
            endpoint_counts=dict(state["ep"]),
            last_event_at=EPOCH + timedelta(milliseconds=last) if last is not None else None,
        )


def _millis(at: datetime) -> int:
    return (at - EPOCH) // timedelta(milliseconds=1)


@dataclass
class WindowState:
    """One pass's tumbling window: its aggregate and the source position last applied.

    Events of a pass all come from one source partition (the topic is keyed by
    pass_id) in offset order, so `last_offset` tells exactly which records this
    window already holds: a redelivered record is recognised and skipped. Offsets
    mean something only within one broker's life (`source_epoch`): the embedded
    broker starts from offset 0 at every start.
    """

    project_id: str
    pass_id: str
    window_start: datetime
    window_seconds: int
    aggregate: UsageAggregate = field(default_factory=UsageAggregate)
    source_partition: int = -1
    last_offset: int = -1
    source_epoch: str = ""

    @property
    def key(self) -> WindowKey:
        return WindowKey(self.project_id, self.pass_id, self.window_start)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "p": self.project_id,
                "s": self.pass_id,
                "w": _millis(self.window_start),
                "n": self.window_seconds,
                "a": self.aggregate.to_state(),
                "sp": self.source_partition,
                "o": self.last_offset,
                "ep": self.source_epoch,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowState:
        raw = orjson.loads(data)
        return cls(
            project_id=raw["p"],
            pass_id=raw["s"],
            window_start=EPOCH + timedelta(milliseconds=raw["w"]),
            window_seconds=raw["n"],
            aggregate=UsageAggregate.from_state(raw["a"]),
            source_partition=raw["sp"],
            last_offset=raw["o"],
            source_epoch=raw.get("ep", ""),
        )


class WindowKey(NamedTuple):
    project_id: str
    pass_id: str
    window_start: datetime

    def encode(self) -> bytes:
        return f"{self.project_id}\x1f{self.pass_id}\x1f{_millis(self.window_start)}".encode()
