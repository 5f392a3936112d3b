from datetime import UTC, datetime, timedelta

from sentinel_usage.stream.metrics import PASS_REQUESTS, PASS_SERIES_DROPPED, PassMetrics

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def exposed(project: str) -> set[str]:
    return {
        sample.labels["pass_id"]
        for metric in PASS_REQUESTS.collect()
        for sample in metric.samples
        if sample.labels.get("project_id") == project
    }


def test_per_pass_series_are_capped_and_leave_when_idle() -> None:
    metrics = PassMetrics(idle=timedelta(hours=1), max_series=3)
    dropped_before = PASS_SERIES_DROPPED._value.get()
    for n in range(5):  # a project with more passes than the cap
        metrics.observe("proj-cap", f"SP-{n}", 10, 1, T0)
    assert exposed("proj-cap") == {"SP-0", "SP-1", "SP-2"}
    assert PASS_SERIES_DROPPED._value.get() == dropped_before + 2

    metrics.observe("proj-cap", "SP-1", 5, 0, T0 + timedelta(minutes=50))
    assert metrics.prune(T0 + timedelta(minutes=70)) == 2  # SP-0 and SP-2 were idle
    assert exposed("proj-cap") == {"SP-1"}
    metrics.observe("proj-cap", "SP-4", 1, 0, T0 + timedelta(minutes=71))  # room again
    assert exposed("proj-cap") == {"SP-1", "SP-4"}
