"""POST /v1/events: HTTP ingest of one event, a JSON array, or NDJSON."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Request, status
from prometheus_client import Counter

from sentinel_usage.api.auth import Principal
from sentinel_usage.api.deps import EventWriter, ServicesDep
from sentinel_usage.api.models import ErrorResponse, FieldError, IngestResponse, RejectedEvent
from sentinel_usage.core.errors import InvalidEventError
from sentinel_usage.core.events import EventValidator, UsageEvent
from sentinel_usage.ingest.body import BodyError, LineError, TooManyEventsError, parse_event_body

router = APIRouter(tags=["ingest"])

EVENTS_INGESTED = Counter("sentinel_ingest_events_accepted", "Events accepted by POST /v1/events.")
EVENTS_REJECTED = Counter("sentinel_ingest_events_rejected", "Events refused by POST /v1/events.")


@router.post(
    "/v1/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestResponse,
    responses={
        413: {"model": ErrorResponse, "description": "Too many events or bytes in one request."},
        422: {"model": ErrorResponse, "description": "The body is not JSON or NDJSON."},
        503: {"model": ErrorResponse, "description": "The broker did not acknowledge."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": ["object", "array"]}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def ingest_events(
    request: Request, principal: EventWriter, services: ServicesDep
) -> IngestResponse:
    """Validate each event, publish the valid ones, report the invalid ones by index.

    202 means the broker acknowledged every accepted event (acks=all). Sending the
    same `event_id` again is safe: it is counted once downstream.
    """
    limits = services.settings
    body = await _read_limited(request, limits.max_request_bytes)
    try:
        items = parse_event_body(
            body, request.headers.get("content-type"), limits.max_request_events
        )
    except TooManyEventsError as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    except BodyError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    valid, rejected = await asyncio.to_thread(_validate_all, items, services.validator, principal)
    if valid:
        try:
            await services.publisher.publish(valid)
        except KafkaError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the broker did not acknowledge the events ({exc.__class__.__name__}); "
                "retry the request: events are deduplicated by event_id",
            ) from None
    EVENTS_INGESTED.inc(len(valid))
    EVENTS_REJECTED.inc(len(rejected))
    return IngestResponse(accepted=len(valid), rejected=rejected)


def _validate_all(
    items: list[Any], validator: EventValidator, principal: Principal
) -> tuple[list[UsageEvent], list[RejectedEvent]]:
    valid: list[UsageEvent] = []
    rejected: list[RejectedEvent] = []
    for index, item in enumerate(items):
        if isinstance(item, LineError):
            rejected.append(
                RejectedEvent(index=index, errors=[FieldError(field="", message=item.message)])
            )
            continue
        try:
            event = validator.validate(item)
        except InvalidEventError as exc:
            rejected.append(
                RejectedEvent(index=index, errors=[FieldError(**e) for e in exc.errors])
            )
            continue
        if not principal.can_access(event.project_id):
            rejected.append(
                RejectedEvent(
                    index=index,
                    errors=[FieldError(field="project_id", message="not granted by this token")],
                )
            )
            continue
        valid.append(event)
    return valid, rejected


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
