"""The error-rate alert rule and an alert's lifecycle: pure, time as a parameter.

A pass's alert fires when, over the trailing window, it made at least
`min_requests` requests and `errors / requests > threshold`; it resolves once
the rule has not held for one whole trailing window. One incident is one
alert: evaluating again while it fires changes nothing but its figures.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from sentinel_usage.core.kept import dumps_kept
from sentinel_usage.core.windows import EPOCH, unix_millis

AlertStatus = Literal["firing", "resolved"]


@dataclass(frozen=True)
class ErrorRateRule:
    threshold: float = 0.05
    min_requests: int = 20
    window: timedelta = timedelta(minutes=5)
    every: timedelta = timedelta(minutes=1)

    def holds(self, requests: int, errors: int) -> bool:
        return requests >= self.min_requests and errors / requests > self.threshold


@dataclass(frozen=True)
class AlertEvent:
    """What is published when an alert fires or resolves (topic, ClickHouse, Alertmanager)."""

    alert_id: str
    project_id: str
    pass_id: str
    state: AlertStatus
    error_rate: float
    requests: int
    errors: int
    window_start: datetime
    window_end: datetime
    fired_at: datetime
    resolved_at: datetime | None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


@dataclass
class PassAlertState:
    """One pass's alert state, kept in a Faust table with a changelog.

    `outbox` holds an event decided but not yet confirmed published: it is
    written with the state, before publishing, and republished after a
    restart, so a crash can neither lose an alert nor fire it twice.
    """

    project_id: str
    pass_id: str
    alert_id: str | None = None
    fired_at: datetime | None = None
    last_held_at: datetime | None = None
    outbox: AlertEvent | None = None
    partition: int = 0  # the pass's source partition (where its changelog entries go)

    @property
    def firing(self) -> bool:
        return self.alert_id is not None

    @property
    def quiet(self) -> bool:
        """Not firing and nothing to publish: the same as no state at all."""
        return not self.firing and self.outbox is None

    def evaluate(
        self,
        rule: ErrorRateRule,
        requests: int,
        errors: int,
        window_start: datetime,
        window_end: datetime,
        now: datetime,
    ) -> AlertEvent | None:
        """Apply one evaluation; return the event to publish on a transition."""
        rate = errors / requests if requests else 0.0
        if rule.holds(requests, errors):
            self.last_held_at = now
            if self.firing:
                return None
            self.alert_id = str(uuid.uuid4())
            self.fired_at = now
            return self._event("firing", rate, requests, errors, window_start, window_end, None)
        if self.firing and self.last_held_at is not None and now - self.last_held_at >= rule.window:
            event = self._event("resolved", rate, requests, errors, window_start, window_end, now)
            self.alert_id = None
            self.fired_at = None
            return event
        return None

    def _event(
        self,
        state: AlertStatus,
        rate: float,
        requests: int,
        errors: int,
        window_start: datetime,
        window_end: datetime,
        resolved_at: datetime | None,
    ) -> AlertEvent:
        assert self.alert_id is not None
        assert self.fired_at is not None
        return AlertEvent(
            self.alert_id,
            self.project_id,
            self.pass_id,
            state,
            rate,
            requests,
            errors,
            window_start,
            window_end,
            self.fired_at,
            resolved_at,
        )

    def to_bytes(self) -> bytes:
        return dumps_kept(
            {
                "p": self.project_id,
                "s": self.pass_id,
                "a": self.alert_id,
                "f": _ms(self.fired_at),
                "h": _ms(self.last_held_at),
                "o": _event_state(self.outbox),
                "sp": self.partition,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PassAlertState:
        raw = orjson.loads(data)
        return cls(
            raw["p"],
            raw["s"],
            raw["a"],
            _from_ms(raw["f"]),
            _from_ms(raw["h"]),
            _event_from_state(raw["o"]),
            raw["sp"],
        )


def _ms(at: datetime | None) -> int | None:
    return None if at is None else unix_millis(at)


def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(milliseconds=value)


def _event_state(event: AlertEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    state = asdict(event)
    for key in ("window_start", "window_end", "fired_at", "resolved_at"):
        state[key] = _ms(state[key])
    return state


def _event_from_state(state: dict[str, Any] | None) -> AlertEvent | None:
    if state is None:
        return None
    for key in ("window_start", "window_end", "fired_at", "resolved_at"):
        state[key] = _from_ms(state[key])
    return AlertEvent(**state)
