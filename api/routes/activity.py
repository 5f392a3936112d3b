"""The activity log of one pass: filtered pages for dashboards, exports for auditors,
and the audit trail of exports."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import IntEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from sentinel_usage.analytics.activity import (
    CURSOR_PATTERNS,
    Cursor,
    ExportBatch,
    InvalidCursorError,
    Order,
)
from sentinel_usage.analytics.exports import ExportRecord
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.api.auth import Principal
from sentinel_usage.api.deps import (
    AnalyticsDep,
    PassIdPath,
    PrincipalDep,
    ReadScopeDep,
    ServicesDep,
    project_scope_for,
    require_pass,
)
from sentinel_usage.api.export_format import MEDIA_TYPES, ExportFormat, export_filename, render
from sentinel_usage.api.filters import ActivityFilterDep
from sentinel_usage.api.models import (
    ActivityPageResponse,
    ActivityRow,
    ExportAuditItem,
    ExportAuditResponse,
)
from sentinel_usage.api.responses import PROJECT_READ_ERRORS

router = APIRouter(tags=["activity"], responses=PROJECT_READ_ERRORS)


def _cursor_query(order: Order) -> Any:
    # The grammar is stated, not enforced, by the document: Cursor.decode enforces it
    # with a message that says which kind of cursor this is.
    return Query(
        max_length=64,
        description="A next_cursor / X-Next-Cursor returned before.",
        json_schema_extra={"pattern": f"^{CURSOR_PATTERNS[order].pattern}$"},
    )


PageCursorParam = Annotated[str | None, _cursor_query("desc")]
ExportCursorParam = Annotated[str | None, _cursor_query("asc")]
ExportScopeDep = Annotated[ProjectScope, Depends(project_scope_for("usage:export"))]


class PerPage(IntEnum):
    """Rows per page (seed: 10, 25, 50 or 100; 25 by default)."""

    TEN = 10
    TWENTY_FIVE = 25
    FIFTY = 50
    HUNDRED = 100


def _cursor(text: str | None, order: Order) -> Cursor | None:
    if text is None:
        return None
    try:
        return Cursor.decode(text, order)
    except InvalidCursorError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": str(exc), "type": "value_error"}]
        ) from None


_ROW = {"$ref": "#/components/schemas/ActivityRow"}
_SAME_PASS = {"project_id": "$request.path.project_id", "pass_id": "$request.path.pass_id"}


def _text_header(description: str, pattern: str, required: bool = True) -> dict[str, Any]:
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string", "pattern": pattern},
    }


@router.get(
    "/v1/projects/{project_id}/passes/{pass_id}/activity",
    response_model=ActivityPageResponse,
    responses={
        200: {
            "description": "One page of the activity log.",
            "links": {
                "nextPage": {
                    "operationId": "list_activity",
                    "parameters": {**_SAME_PASS, "cursor": "$response.body#/next_cursor"},
                    "description": "The rows after this page (same filters).",
                }
            },
        }
    },
)
async def list_activity(
    pass_id: PassIdPath,
    scope: ReadScopeDep,
    services: ServicesDep,
    analytics: AnalyticsDep,
    filters: ActivityFilterDep,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")] = 1,
    per_page: Annotated[
        PerPage, Query(description="Rows per page: 10, 25, 50 or 100.")
    ] = PerPage.TWENTY_FIVE,
    cursor: PageCursorParam = None,
) -> ActivityPageResponse:
    """The pass's activity, newest first (ties broken by event_id).

    Page by `page`, or walk with `cursor=<next_cursor>`: keyset paging never
    skips or repeats a row while the log grows.
    """
    after = _cursor(cursor, "desc")
    await require_pass(services, scope, pass_id)
    result = await analytics.activity_page(scope, pass_id, page, int(per_page), filters, after)
    return ActivityPageResponse(
        items=[ActivityRow(**row) for row in result.items],
        page=page,
        per_page=int(per_page),
        total=result.total,
        next_cursor=result.next_cursor.encode() if result.next_cursor else None,
    )


@router.get(
    "/v1/projects/{project_id}/passes/{pass_id}/activity/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file: `sentinel-pass-activity-{passId}-{timestamp}.{format}`.",
            "content": {
                MEDIA_TYPES[ExportFormat.CSV]: {"schema": {"type": "string"}},
                MEDIA_TYPES[ExportFormat.JSON]: {"schema": {"type": "array", "items": _ROW}},
                MEDIA_TYPES[ExportFormat.JSONL]: {
                    "schema": {"type": "string", "description": "One ActivityRow per line."}
                },
            },
            "headers": {
                "Content-Disposition": _text_header("The file name.", "^attachment; "),
                "X-Total-Count": _text_header(
                    "Rows matching the filters in the snapshot.", "^[0-9]+$"
                ),
                "X-Export-Rows": _text_header("Rows in this file (at most 10,000).", "^[0-9]+$"),
                "X-Export-Truncated": _text_header(
                    "true when more rows match than this file holds.", "^(true|false)$"
                ),
                "X-Export-Snapshot": _text_header(
                    "Rows ingested after this instant are not part of the export.", "^[0-9]{4}-"
                ),
                "X-Next-Cursor": _text_header(
                    "Where the next batch starts; absent on the last batch.",
                    f"^{CURSOR_PATTERNS['asc'].pattern}$",
                    required=False,
                ),
            },
            "links": {
                "nextBatch": {
                    "operationId": "export_activity",
                    "parameters": {
                        **_SAME_PASS,
                        "cursor": "$response.header.X-Next-Cursor",
                    },
                    "description": "The next batch of the same export (same filters).",
                }
            },
        },
    },
)
async def export_activity(
    pass_id: PassIdPath,
    scope: ExportScopeDep,
    principal: PrincipalDep,
    services: ServicesDep,
    analytics: AnalyticsDep,
    filters: ActivityFilterDep,
    format: Annotated[ExportFormat, Query(description="csv, json or jsonl")] = ExportFormat.CSV,
    cursor: ExportCursorParam = None,
) -> StreamingResponse:
    """At most 10,000 rows, oldest first, from a snapshot pinned by the first batch.

    When more rows match, `X-Export-Truncated: true` and `X-Next-Cursor` say where
    the next batch starts: pass it back as `cursor=` with the same filters, and
    the batches cover the range with no gap and no overlap.
    """
    after = _cursor(cursor, "asc")
    await require_pass(services, scope, pass_id)
    requested_at = services.clock.now()
    batch = await analytics.export_batch(
        scope,
        pass_id,
        filters,
        after,
        snapshot_lag=services.settings.export_snapshot_lag,
    )
    next_cursor = batch.next_cursor.encode() if batch.next_cursor else None
    await analytics.record_export(
        _audit(
            principal,
            scope,
            pass_id,
            format,
            filters.describe(),
            cursor,
            batch,
            next_cursor,
            requested_at,
        ),
    )
    headers = {
        "Content-Disposition": (
            f'attachment; filename="{export_filename(pass_id, requested_at, format)}"'
        ),
        "X-Total-Count": str(batch.total),
        "X-Export-Rows": str(len(batch.rows)),
        "X-Export-Truncated": "true" if batch.truncated else "false",
        "X-Export-Snapshot": batch.snapshot.isoformat(timespec="milliseconds"),
        "Cache-Control": "no-store",
    }
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return StreamingResponse(
        render(batch.rows, format), media_type=MEDIA_TYPES[format], headers=headers
    )


def _audit(
    principal: Principal,
    scope: ProjectScope,
    pass_id: str,
    fmt: ExportFormat,
    filters: dict[str, str],
    cursor: str | None,
    batch: ExportBatch,
    next_cursor: str | None,
    requested_at: datetime,
) -> ExportRecord:
    return ExportRecord(
        export_id=uuid.uuid4(),
        project_id=scope.project_id,
        pass_id=pass_id,
        subject=principal.subject,
        format=fmt.value,
        filters=filters,
        cursor=cursor,
        row_count=len(batch.rows),
        total_count=batch.total,
        truncated=batch.truncated,
        next_cursor=next_cursor,
        snapshot=batch.snapshot,
        requested_at=requested_at,
    )


@router.get("/v1/projects/{project_id}/exports", response_model=ExportAuditResponse)
async def list_exports(
    scope: ExportScopeDep,
    services: ServicesDep,
    analytics: AnalyticsDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[PerPage, Query()] = PerPage.TWENTY_FIVE,
) -> ExportAuditResponse:
    """The project's exports, newest first: who, which pass, which filters, how many rows."""
    records, total = await analytics.exports(scope, int(per_page), (page - 1) * int(per_page))
    return ExportAuditResponse(
        items=[ExportAuditItem(**r.model_dump()) for r in records],
        page=page,
        per_page=int(per_page),
        total=total,
    )
