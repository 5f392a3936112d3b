"""What makes this process not ready, reported by the parts that know it.

The sink reports "ClickHouse writes failing" while it retries, the worker that it
stopped; `/readyz` lists every open problem. One board per process, like
Prometheus' registry: in `up` the worker and the API share a process.
"""

from __future__ import annotations

import threading


class HealthBoard:
    """Open problems by component; thread-safe (the sink reports from threads too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, str] = {}

    def report(self, component: str, problem: str | None) -> None:
        """Open (or update) `component`'s problem; None closes it."""
        with self._lock:
            if problem is None:
                self._problems.pop(component, None)
            else:
                self._problems[component] = problem

    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._problems)


HEALTH = HealthBoard()
