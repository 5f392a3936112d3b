"""Building valid raw events for tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

# Every field of the event's wire form (strategies pick among them).
EVENT_FIELDS = ("event_id", "project_id", "pass_id", "client_id", "activity_type", "started_at",
                "endpoint", "http_method", "status_code", "success", "duration_ms", "client_ip",
                "user_agent", "error_message", "metadata")  # fmt: skip


def raw_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "project_id": "proj-a",
        "pass_id": "SP-2024-A1B2C3",
        "client_id": "client-1",
        "activity_type": "api_request",
        "started_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        "endpoint": "/v1/items",
        "http_method": "GET",
        "status_code": 200,
        "duration_ms": 42.5,
        "client_ip": "203.0.113.7",
        "user_agent": "agent/1.0",
        "metadata": {"region": "eu"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}
