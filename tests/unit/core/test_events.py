from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel_usage.core.clock import FixedClock
from sentinel_usage.core.columns import validate_events
from sentinel_usage.core.endpoints import normalise_endpoint
from sentinel_usage.core.errors import InvalidEventError
from sentinel_usage.core.events import MISSING_SUCCESS, EventValidator, ValidationPolicy
from tests.factories import raw_event

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
VALIDATOR = EventValidator(ValidationPolicy(clock=FixedClock(NOW)))


def errors_of(raw: object) -> dict[str, str]:
    with pytest.raises(InvalidEventError) as info:
        VALIDATOR.validate(raw)
    return {e["field"]: e["message"] for e in info.value.errors}


def at(**delta: float) -> str:
    return (NOW + timedelta(**delta)).isoformat()


def test_a_valid_event_is_normalised() -> None:
    event = VALIDATOR.validate(
        raw_event(
            started_at="2026-11-24T11:00:00",  # naive means UTC
            endpoint="/v1/items/42/parts/3f2b8c1e-1d2a-4b6c-9e8f-0a1b2c3d4e5f?x=1",
            http_method="post",
            client_ip=" 2001:db8:0:0::1 ",
        )
    )
    assert event.started_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert event.endpoint == "/v1/items/{id}/parts/{id}"
    assert event.http_method == "POST"
    assert event.client_ip == "2001:db8::1"
    assert event.success is True


@pytest.mark.parametrize(
    ("status", "activity", "expected"),
    [
        (200, "api_request", True),
        (399, "api_request", True),
        (400, "api_request", False),
        (503, "token_generation", False),
        (None, "error", False),
    ],
)
def test_success_is_derived_from_status_code_when_absent(
    status: int | None, activity: str, expected: bool
) -> None:
    raw = raw_event(status_code=status, activity_type=activity, started_at=at(minutes=-1))
    assert VALIDATOR.validate(raw).success is expected


def test_a_400_is_an_error_not_only_above_400() -> None:
    # Tyk Pump once used `> 400` and missed every 400 (DESIGN.md pitfalls).
    assert VALIDATOR.validate(raw_event(status_code=400, started_at=at(minutes=-1))).is_error


def test_success_true_with_an_error_status_is_refused() -> None:
    assert "success" in errors_of(raw_event(status_code=500, success=True, started_at=at(hours=-1)))


def test_missing_required_fields_are_each_named() -> None:
    errors = errors_of({"project_id": "p"})
    for field in (
        "pass_id",
        "client_id",
        "activity_type",
        "started_at",
        "endpoint",
        "http_method",
        "duration_ms",
    ):
        assert errors[field] == "Field required"


def test_success_with_nothing_to_derive_it_from_says_what_would_do() -> None:
    raw = raw_event(started_at=at(hours=-1))
    del raw["status_code"]
    assert errors_of(raw) == {"success": MISSING_SUCCESS}
    # The columnar validator of batches gives the same reason.
    (rejected,) = validate_events([raw], VALIDATOR).rejected
    assert rejected[1].errors == [{"field": "success", "message": MISSING_SUCCESS}]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("activity_type", "login", "'api_request', 'token_generation' or 'error'"),
        ("status_code", 99, "greater than or equal to 100"),
        ("status_code", 600, "less than or equal to 599"),
        ("duration_ms", -1, "greater than or equal to 0"),
        ("duration_ms", math.inf, "finite"),
        ("duration_ms", math.nan, "finite"),
        ("client_ip", "999.1.1.1", "not a valid IPv4 or IPv6 address"),
        ("client_ip", "localhost", "not a valid IPv4 or IPv6 address"),
        ("started_at", "yesterday", "datetime"),
        ("event_id", "not-a-uuid", "UUID"),
        ("user_agent", "x" * 1025, "at most 1024 characters"),
        ("endpoint", "/" + "a" * 2048, "at most 2048 characters"),
        ("project_id", "", "at least 1 character"),
        ("pass_id", "SP 1; DROP", "pattern"),
        ("metadata", {"blob": "x" * 20_000}, "at most 16384 allowed"),
        ("metadata", [1, 2], "valid dictionary"),
        ("sucess", True, "Extra inputs are not permitted"),
    ],
)
def test_invalid_fields_get_precise_messages(field: str, value: object, needle: str) -> None:
    raw = raw_event(started_at=at(minutes=-1))
    raw[field] = value
    assert needle in errors_of(raw)[field]


def test_started_at_more_than_five_minutes_ahead_is_refused() -> None:
    assert VALIDATOR.validate(raw_event(started_at=at(minutes=4, seconds=59)))
    assert (
        "in the future" in errors_of(raw_event(started_at=at(minutes=5, seconds=1)))["started_at"]
    )


def test_started_at_beyond_retention_is_refused() -> None:
    assert "retention of 90 days" in errors_of(raw_event(started_at=at(days=-91)))["started_at"]


def test_started_at_with_an_offset_is_converted_to_utc() -> None:
    event = VALIDATOR.validate(raw_event(started_at="2026-11-24T13:00:00+02:00"))
    assert event.started_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)


def test_a_non_object_is_refused_as_a_whole() -> None:
    assert errors_of([1, 2]) == {"": "an event must be a JSON object, not an array"}


def test_event_id_is_generated_from_content_when_absent() -> None:
    raw = raw_event(started_at=at(minutes=-1))
    del raw["event_id"]
    first, again = VALIDATOR.validate(dict(raw)), VALIDATOR.validate(dict(raw))
    assert isinstance(first.event_id, uuid.UUID)
    assert first.event_id == again.event_id  # a re-sent payload deduplicates
    other = VALIDATOR.validate({**raw, "duration_ms": 1.0})
    assert other.event_id != first.event_id


def test_wire_form_round_trips() -> None:
    event = VALIDATOR.validate(raw_event(started_at=at(minutes=-1)))
    assert VALIDATOR.validate(event.to_wire()) == event


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/v1/items/42", "/v1/items/{id}"),
        ("/v1/items/{item_id}", "/v1/items/{item_id}"),
        ("v1/users/", "/v1/users"),
        ("/", "/"),
        ("/v1/orders/5f0c7a2e9b1d4c3a8e7f6d5c4b3a2910/lines", "/v1/orders/{id}/lines"),
        ("/oauth/token?grant_type=client_credentials", "/oauth/token"),
    ],
)
def test_endpoint_normalisation(raw: str, expected: str) -> None:
    assert normalise_endpoint(raw) == expected


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_endpoint_normalisation_is_idempotent(path: str) -> None:
    once = normalise_endpoint(path)
    assert normalise_endpoint(once) == once
    assert once.startswith("/")


def nested_metadata(levels: int) -> dict[str, object]:
    """`metadata` nested `levels` deep (built from text: orjson writes at most 254)."""
    import orjson

    return orjson.loads(b'{"a":' * levels + b"1" + b"}" * levels)  # type: ignore[no-any-return]


@pytest.mark.parametrize("levels", [33, 300, 1000])
def test_metadata_nested_beyond_the_limit_is_refused_naming_field_and_limit(levels: int) -> None:
    with pytest.raises(InvalidEventError) as caught:
        EventValidator().validate(raw_event(metadata=nested_metadata(levels)))
    assert caught.value.errors == [{"field": "metadata", "message": "nests deeper than 32 levels"}]


def test_metadata_at_the_depth_limit_is_accepted_and_the_limit_is_a_policy() -> None:
    assert EventValidator().validate(raw_event(metadata=nested_metadata(32))).metadata
    shallow = EventValidator(ValidationPolicy(max_metadata_depth=4))
    with pytest.raises(InvalidEventError, match="nests deeper than 4 levels"):
        shallow.validate(raw_event(metadata=nested_metadata(5)))
