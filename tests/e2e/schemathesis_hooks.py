"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

- Two rules of the API relate two fields, which no JSON Schema can say: `start_date`
  must not be after `end_date`, and a pass's `valid_until` must not be before its
  `valid_from` (422s that the document states in words). The generator is taught the
  rules, so that every check still runs on every operation.
- Tenant isolation as a check on every generated read: what one project's token reads,
  another project's token gets a 404 for (Schemathesis' own object_level_authorization
  check did not notice a breach made on purpose here: it probes only values it drew
  itself, and our path ids are fixed by the configuration)."""

from __future__ import annotations

import os
from datetime import date
from typing import Any

import schemathesis
from fastapi.exceptions import RequestValidationError

from sentinel_usage.api.filters import parse_instant


@schemathesis.hook
def filter_query(context: Any, query: dict[str, Any] | None) -> bool:
    if not query or not isinstance(query.get("start_date"), str):
        return True
    if not isinstance(query.get("end_date"), str):
        return True
    try:
        return parse_instant("start_date", query["start_date"]) <= parse_instant(
            "end_date", query["end_date"]
        )
    except RequestValidationError:
        return True  # a malformed date: the server's 422 is the expected answer


@schemathesis.check
def another_project_gets_404(ctx: Any, response: Any, case: Any) -> None:
    token = os.environ.get("SENTINEL_OTHER_PROJECT_TOKEN")
    if not token or case.method != "GET" or "{project_id}" not in case.path:
        return
    if not 200 <= response.status_code < 300:
        return
    probe = case.call(headers={"Authorization": f"Bearer {token}"})
    if probe.status_code != 404:
        raise AssertionError(
            f"another project's token got {probe.status_code} for {case.method} "
            f"{case.formatted_path}, not 404"
        )


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """A pass's `valid_until` must not be before its `valid_from`: the same kind of rule
    between two fields, taught to the generator likewise."""
    if not isinstance(body, dict):
        return True
    start, until = body.get("valid_from"), body.get("valid_until")
    if not isinstance(start, str) or not isinstance(until, str):
        return True
    try:
        return date.fromisoformat(until) >= date.fromisoformat(start)
    except ValueError:
        return True  # a malformed date: the server's 422 is the expected answer
