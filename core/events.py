"""The usage event: one gateway request or token exchange made with a Sentinel Pass.

Field names are the public contract (shared/seeds). The event's rules are declared
once, below (patterns, ranges, text limits, the success rule); the model here and the
columnar validator of core/columns.py are both built from them. `EventValidator` turns
an untrusted JSON object into a `UsageEvent` or an `InvalidEventError` whose errors name
each bad field and say what is allowed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.core.endpoints import normalise_endpoint
from sentinel_usage.core.errors import InvalidEventError

if TYPE_CHECKING:
    from sentinel_usage.core.settings import Settings

ActivityType = Literal["api_request", "token_generation", "error"]
ACTIVITY_TYPES: Final = ("api_request", "token_generation", "error")

# Event ids generated for events sent without one are derived from the event's
# content, so that a client re-sending the same payload is deduplicated too.
EVENT_ID_NAMESPACE: Final = uuid.UUID("6f1d2c1e-6a39-4d53-9a55-2f8f3c2b7a10")

# -- the rules (one declaration: the model below and core/columns.py use these) ---------

IDENTIFIER_FIELDS: Final = ("project_id", "pass_id", "client_id")
MAX_IDENTIFIER_CHARS: Final = 128
MAX_METHOD_CHARS: Final = 16
# Anchored, the same text for pydantic's and Arrow's (RE2) regex; the length is checked
# apart (MAX_IDENTIFIER_CHARS): Arrow compiles a regex on every call, and RE2 took 270 µs
# to compile the counted `{0,127}`, against 12 µs for the `*` (bench/pipeline_bench.py's
# ingest and stream check three identifiers per batch).
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
METHOD_PATTERN: Final = rf"^[A-Za-z]{{1,{MAX_METHOD_CHARS}}}$"  # after spaces are stripped
STATUS_RANGE: Final = (100, 599)
MAX_DURATION_MS: Final = 24 * 3600 * 1000.0
MAX_ENDPOINT_CHARS: Final = 2048
MAX_USER_AGENT_CHARS: Final = 1024
MAX_ERROR_MESSAGE_CHARS: Final = 4096
# Optional texts and their limits, in characters.
TEXT_LIMITS: Final = {"user_agent": MAX_USER_AGENT_CHARS, "error_message": MAX_ERROR_MESSAGE_CHARS}
MAX_METADATA_BYTES: Final = 16 * 1024
MAX_METADATA_DEPTH: Final = 32
ERROR_STATUS: Final = 400  # an error is status_code >= 400 (or an `error` activity)
ERROR_ACTIVITY: Final = "error"

# An identifier's length is checked apart from its pattern (above); the method's is in
# its pattern too, and stated apart gives the clearer message.
Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_IDENTIFIER_CHARS, pattern=IDENTIFIER_PATTERN),
]
HttpMethod = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_METHOD_CHARS,
        pattern=METHOD_PATTERN,
        to_upper=True,
        strip_whitespace=True,
    ),
]


class UsageEvent(BaseModel):
    """A validated, normalised event. `success` is false for every error
    (`status_code >= 400`, or an `error` activity), so it alone classifies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID
    project_id: Identifier
    pass_id: Identifier
    client_id: Identifier
    activity_type: ActivityType
    started_at: datetime
    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ENDPOINT_CHARS)]
    http_method: HttpMethod
    status_code: int | None = Field(None, ge=STATUS_RANGE[0], le=STATUS_RANGE[1])
    success: bool
    duration_ms: float = Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)
    client_ip: str | None = None
    user_agent: Annotated[str, StringConstraints(max_length=TEXT_LIMITS["user_agent"])] | None = (
        None
    )
    error_message: (
        Annotated[str, StringConstraints(max_length=TEXT_LIMITS["error_message"])] | None
    ) = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _fill_derived(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("event_id") is None:
            data["event_id"] = content_event_id(data)
        if data.get("success") is None:
            status, activity = data.get("status_code"), data.get("activity_type")
            if isinstance(status, int) and not isinstance(status, bool):
                data["success"] = status < ERROR_STATUS and activity != ERROR_ACTIVITY
            elif activity == ERROR_ACTIVITY:
                data["success"] = False
        return data

    @field_validator("started_at")
    @classmethod
    def _started_at_in_range(cls, value: datetime, info: ValidationInfo) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # Millisecond precision, as stored (DateTime64(3)): an event's identity
        # (project, pass, started_at, event_id) must compare equal everywhere.
        value = value.replace(microsecond=value.microsecond // 1000 * 1000)
        policy: ValidationPolicy = (info.context or {}).get("policy", DEFAULT_POLICY)
        now = policy.clock.now()
        if value > now + policy.max_future_skew:
            raise ValueError(
                f"is more than {int(policy.max_future_skew.total_seconds())} s in the future"
            )
        if value < now - policy.retention:
            raise ValueError(f"is older than the retention of {policy.retention.days} days")
        return value

    @field_validator("endpoint")
    @classmethod
    def _normalise_endpoint(cls, value: str) -> str:
        return normalise_endpoint(value)

    @field_validator("client_ip")
    @classmethod
    def _valid_ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return ip_address(value.strip()).compressed
        except ValueError:
            raise ValueError("is not a valid IPv4 or IPv6 address") from None

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        policy: ValidationPolicy = (info.context or {}).get("policy", DEFAULT_POLICY)
        metadata_json(value, policy.max_metadata_depth)
        return value

    @model_validator(mode="after")
    def _consistent_outcome(self) -> UsageEvent:
        # The success rule, per event; its columnar form is core/columns.py `_checks_projection`
        # (tests/unit/core/test_columns.py checks that the two agree).
        if self.success and self.status_code is not None and self.status_code >= ERROR_STATUS:
            raise ValueError(f"success=true contradicts status_code >= {ERROR_STATUS}")
        if self.success and self.activity_type == ERROR_ACTIVITY:
            raise ValueError(f"success=true contradicts activity_type '{ERROR_ACTIVITY}'")
        return self

    @property
    def is_error(self) -> bool:
        return not self.success

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready form written to Kafka (orjson serialises UUIDs and datetimes)."""
        return self.model_dump()


@dataclass(frozen=True)
class ValidationPolicy:
    clock: Clock = SYSTEM_CLOCK
    max_future_skew: timedelta = timedelta(minutes=5)
    retention: timedelta = timedelta(days=90)
    max_metadata_depth: int = MAX_METADATA_DEPTH

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> ValidationPolicy:
        return cls(
            clock=clock,
            max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
            retention=timedelta(days=settings.retention_days),
            max_metadata_depth=settings.max_metadata_depth,
        )


DEFAULT_POLICY: Final = ValidationPolicy()


def metadata_json(value: dict[str, Any], max_depth: int = MAX_METADATA_DEPTH) -> bytes:
    """`metadata` as JSON, or ValueError naming the limit it breaks: JSON-serialisable,
    at most MAX_METADATA_BYTES, nested at most `max_depth` levels (the object itself
    is level 1). The one statement of the rule: the model, the fast path and the
    columnar validator all call it.

    orjson refuses to serialise beyond 254 levels with a TypeError that once escaped
    the worker and stalled a partition (issue 11): every such error is a ValueError here.
    """
    try:
        text = orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError: unserialisable, or too deep for orjson
        if "recursion" in str(exc).lower():
            raise ValueError(f"nests deeper than {max_depth} levels") from None
        raise ValueError(f"must be JSON-serialisable: {exc}") from None
    if len(text) > MAX_METADATA_BYTES:
        raise ValueError(f"is {len(text)} bytes as JSON; at most {MAX_METADATA_BYTES} allowed")
    # Each level opens a bracket: the walk is needed only when there are enough of them.
    if text.count(b"{") + text.count(b"[") > max_depth and _depth(value) > max_depth:
        raise ValueError(f"nests deeper than {max_depth} levels")
    return text


def _depth(value: Any) -> int:
    """Nesting levels of objects and arrays (iterative: no recursion limit to hit)."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, level)
        pending.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


def content_event_id(data: dict[str, Any]) -> uuid.UUID:
    """A stable id for an event sent without one: the same content, the same id."""
    try:
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # Not serialisable (nested beyond orjson's limit, an integer beyond 64 bits):
        # the field rules refuse such an event anyway, so its id only has to exist.
        # (A repr() here raised RecursionError on deep nesting.)
        return uuid.uuid4()
    return uuid.uuid5(EVENT_ID_NAMESPACE, canonical.decode("utf-8", "replace"))


@dataclass(frozen=True)
class EventValidator:
    """Validates untrusted event objects against one policy."""

    policy: ValidationPolicy = field(default_factory=ValidationPolicy)

    def validate(self, raw: Any) -> UsageEvent:
        """Return the normalised event, or raise InvalidEventError listing every problem.

        Batches take core/columns.py `validate_events` (the hot path); this model sees only
        the events its columnar checks leave, and single events. (A per-event fast path
        stood here; it was never on the hot path, and is gone.)"""
        if not isinstance(raw, dict):
            raise InvalidEventError(
                [{"field": "", "message": f"an event must be a JSON object, not {_kind(raw)}"}]
            )
        try:
            return UsageEvent.model_validate(raw, context={"policy": self.policy})
        except ValidationError as exc:
            raise InvalidEventError(_field_errors(exc)) from None


MISSING_SUCCESS: Final = "Field required: give success, or a status_code to derive it from"


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if not loc and "success" in message:
            loc = "success"
        elif loc == "success" and err["type"] == "missing":
            message = MISSING_SUCCESS  # it is required only when it cannot be derived
        errors.append({"field": loc, "message": message})
    return errors


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def event_time(value: datetime) -> datetime:
    """Aware UTC datetime from a possibly naive one (ClickHouse returns naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
