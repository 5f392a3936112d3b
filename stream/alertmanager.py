"""Pushing alerts to Alertmanager (`POST /api/v2/alerts`) without ever blocking the stream.

`notify()` only enqueues; a background task posts with exponential back-off and
keeps the newest payload when the receiver is down (firing alerts are sent again
at every evaluation anyway, as Alertmanager expects, so an older payload is
superseded). A full queue drops and counts.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from prometheus_client import Counter

from sentinel_usage.core.alerts import AlertEvent, PassAlertState
from sentinel_usage.core.periodic import cancel_and_wait

log = structlog.get_logger(__name__)

ALERTNAME = "SentinelPassErrorRateHigh"
AM_SENT = Counter("sentinel_alertmanager_posts", "Posts accepted by Alertmanager.")
AM_FAILED = Counter("sentinel_alertmanager_post_failures", "Posts to Alertmanager that failed.")
AM_DROPPED = Counter("sentinel_alertmanager_dropped", "Alert payloads dropped: queue full.")


def _ts(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _labels(project_id: str, pass_id: str) -> dict[str, str]:
    return {
        "alertname": ALERTNAME,
        "project_id": project_id,
        "pass_id": pass_id,
        "severity": "warning",
    }


def from_event(event: AlertEvent, now: datetime, hold: timedelta) -> dict[str, Any]:
    body: dict[str, Any] = {
        "labels": _labels(event.project_id, event.pass_id),
        "annotations": {
            "summary": f"Sentinel Pass {event.pass_id}: error rate {event.error_rate:.1%} "
            f"over {event.requests} requests",
            "alert_id": event.alert_id,
            "error_rate": f"{event.error_rate:.4f}",
            "requests": str(event.requests),
            "errors": str(event.errors),
        },
        "startsAt": _ts(event.fired_at),
    }
    body["endsAt"] = _ts(event.resolved_at if event.resolved_at else now + hold)
    return body


def still_firing(state: PassAlertState, now: datetime, hold: timedelta) -> dict[str, Any]:
    assert state.fired_at is not None
    return {
        "labels": _labels(state.project_id, state.pass_id),
        "annotations": {"alert_id": state.alert_id or ""},
        "startsAt": _ts(state.fired_at),
        "endsAt": _ts(now + hold),
    }


class AlertmanagerNotifier:
    def __init__(
        self,
        url: str,
        queue_size: int = 100,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        self._url = url.rstrip("/") + "/api/v2/alerts"
        self._queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(maxsize=queue_size)
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None

    def notify(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            return
        try:
            self._queue.put_nowait(alerts)
        except asyncio.QueueFull:
            AM_DROPPED.inc()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alertmanager-notifier")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            while True:
                alerts = await self._queue.get()
                attempt = 0
                while True:
                    # a newer payload for the same alerts supersedes a failing one
                    while not self._queue.empty():
                        alerts = _merge(alerts, self._queue.get_nowait())
                    try:
                        response = await client.post(self._url, json=alerts)
                        response.raise_for_status()
                        AM_SENT.inc()
                        break
                    except httpx.HTTPError as exc:
                        AM_FAILED.inc()
                        delay = min(self._max_delay, self._first_delay * 2**attempt)
                        log.warning("alertmanager_post_failed", error=repr(exc), retry_in=delay)
                        await asyncio.sleep(delay)
                        attempt += 1


def _merge(older: list[dict[str, Any]], newer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newer payloads win per label set; resolutions are never lost."""
    merged = {tuple(sorted(a["labels"].items())): a for a in older}
    for alert in newer:
        merged[tuple(sorted(alert["labels"].items()))] = alert
    return list(merged.values())
