"""POST /v1/events: HTTP ingest of one event, a JSON array, or NDJSON."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from prometheus_client import Counter

from sentinel_usage.api.deps import EventWriter, ServicesDep
from sentinel_usage.api.models import FieldError, IngestResponse, RejectedEvent
from sentinel_usage.api.responses import RETRY_AFTER_SECONDS, error_responses
from sentinel_usage.ingest.batches import PublishError
from sentinel_usage.ingest.body import (
    NDJSON_TYPES,
    BodyError,
    TooManyEventsError,
    UnsupportedMediaTypeError,
)

router = APIRouter(tags=["ingest"])

_EXAMPLE_EVENT = {
    "project_id": "demo",
    "pass_id": "SP-2026-A1B2C3",
    "client_id": "sp_client_1234",
    "activity_type": "api_request",
    "started_at": "2026-11-24T09:30:00.000Z",
    "endpoint": "/v1/items/{item_id}",
    "http_method": "GET",
    "status_code": 200,
    "duration_ms": 42.5,
}
_NDJSON = {"schema": {"type": "string", "description": "One event per line."}}
# The body's three forms. Events are validated one by one, not by this schema: an
# invalid event is reported in `rejected` (by index) and the others are accepted, so
# the per-event contract lives in the description, not in a schema that would refuse
# the whole request.
INGEST_BODY = {
    "required": True,
    "description": "One event (a JSON object), a JSON array of events, or NDJSON (one "
    "event per line). Event fields: `project_id`, `pass_id`, `client_id`, "
    "`activity_type` (api_request, token_generation, error), `started_at` (ISO 8601; "
    "naive means UTC), `endpoint`, `http_method`, `duration_ms`, and optionally "
    "`event_id` (UUID; derived from the content when absent), `status_code`, `success`, "
    "`client_ip`, `user_agent`, `error_message`, `metadata` (an object, nested at most "
    "`SENTINEL_MAX_METADATA_DEPTH` levels).",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "object", "description": "One event."},
                    {"type": "array", "description": "Events, each validated on its own."},
                ]
            },
            "examples": {
                "one": {"value": _EXAMPLE_EVENT},
                "array": {"value": [_EXAMPLE_EVENT]},
            },
        },
        **{media: _NDJSON for media in sorted(NDJSON_TYPES)},
    },
}

EVENTS_INGESTED = Counter("sentinel_ingest_events_accepted", "Events accepted by POST /v1/events.")
EVENTS_REJECTED = Counter("sentinel_ingest_events_rejected", "Events refused by POST /v1/events.")


@router.post(
    "/v1/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestResponse,
    responses=error_responses(401, 403, 413, 415, 422, 503),
    openapi_extra={"requestBody": INGEST_BODY},
)
async def ingest_events(
    request: Request, principal: EventWriter, services: ServicesDep
) -> IngestResponse:
    """Validate each event, publish the valid ones, report the invalid ones by index.

    202 means the broker acknowledged every accepted event (acks=all). Sending the
    same `event_id` again is safe: it is counted once downstream.
    """
    body = await _read_limited(request, services.settings.max_request_bytes)
    try:
        batch = await services.ingest.ingest(
            body, request.headers.get("content-type"), principal.can_access
        )
    except TooManyEventsError as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    except UnsupportedMediaTypeError as exc:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from None
    except BodyError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except PublishError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the events could not be made durable ({exc}); "
            "retry the request: events are deduplicated by event_id",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    EVENTS_INGESTED.inc(batch.accepted)
    EVENTS_REJECTED.inc(len(batch.rejected))
    rejected = [
        RejectedEvent(index=index, errors=[FieldError(**e) for e in errors])
        for index, errors in batch.rejected
    ]
    return IngestResponse(accepted=batch.accepted, rejected=rejected)


async def _read_limited(request: Request, limit: int) -> bytes:
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"request body exceeds {limit} bytes ({limit / 1024 / 1024:g} MiB)",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise too_large
    return bytes(chunks)
