from __future__ import annotations

import pytest

from sentinel_usage.api.routes.usage import latency_level


@pytest.mark.parametrize(
    ("avg", "level"),
    [(None, None), (0.0, "green"), (199.9, "green"), (200.0, "yellow"), (500.0, "yellow"),
     (500.1, "red")],
)  # fmt: skip
def test_the_seed_colour_thresholds(avg: float | None, level: str | None) -> None:
    assert latency_level(avg) == level
