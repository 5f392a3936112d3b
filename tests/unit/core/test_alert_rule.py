from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sentinel_usage.core.alerts import ErrorRateRule, PassAlertState

RULE = ErrorRateRule()
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def step(state: PassAlertState, minute: int, requests: int, errors: int) -> str | None:
    now = T0 + timedelta(minutes=minute)
    event = state.evaluate(RULE, requests, errors, now - RULE.window, now, now)
    return event.state if event else None


@pytest.mark.parametrize(
    ("requests", "errors", "fires"),
    [(100, 10, True), (100, 4, False), (100, 5, False), (100, 6, True), (5, 3, False),
     (20, 2, True), (19, 19, False), (0, 0, False)],
)  # fmt: skip
def test_the_rule_needs_volume_and_strictly_more_than_five_percent(
    requests: int, errors: int, fires: bool
) -> None:
    assert RULE.holds(requests, errors) is fires


def test_one_incident_is_one_alert_until_it_resolves() -> None:
    state = PassAlertState("p", "SP-1")
    assert step(state, 0, 100, 10) == "firing"
    alert_id = state.alert_id
    assert [step(state, m, 100, 10) for m in range(1, 4)] == [None, None, None]
    assert state.alert_id == alert_id
    # errors stop: resolved once the rule has not held for a whole window (5 min)
    assert [step(state, m, 100, 0) for m in range(4, 8)] == [None] * 4
    assert step(state, 8, 100, 0) == "resolved"
    assert not state.firing
    # a new incident later is a new alert
    assert step(state, 20, 50, 30) == "firing"
    assert state.alert_id != alert_id


def test_a_flapping_pass_does_not_resolve_in_between() -> None:
    state = PassAlertState("p", "SP-1")
    step(state, 0, 100, 10)
    results = [step(state, m, 100, 10 if m % 3 == 0 else 0) for m in range(1, 12)]
    assert "resolved" not in results
    assert "firing" not in results


def test_state_round_trips_with_its_outbox() -> None:
    state = PassAlertState("p", "SP-1", partition=3)
    now = T0
    state.outbox = state.evaluate(RULE, 100, 10, now - RULE.window, now, now)
    again = PassAlertState.from_bytes(state.to_bytes())
    assert again == state
