"""A Sentinel Pass: its fields, their rules and their defaults (the seeds' contract), as
the shapes a client sends (PassCreate, PassUpdate) and the record the store keeps."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    computed_field,
    field_validator,
    model_validator,
)

PASS_ID_PATTERN: Final = r"^SP-[0-9]{4}-[A-Z0-9]{6}$"  # noqa: S105 - not a secret
AGENT_NAME_PATTERN: Final = r"^[A-Za-z0-9 ]*[A-Za-z0-9][A-Za-z0-9 ]*$"
# RFC 6749 §3.3 allows any printable ASCII but space, quote and backslash in a scope token;
# ours are `read`, `read:data`, `admin:users`...: a narrower, readable alphabet.
_SCOPE: Final = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
SCOPE_PATTERN: Final = re.compile(_SCOPE)
# The string form: scopes separated by commas and/or spaces. 199 characters hold at
# most 100 scopes, so what the document allows is what the server accepts.
SCOPES_TEXT_PATTERN: Final = re.compile(rf"[ ,]*{_SCOPE}(?:[ ,]+{_SCOPE})*[ ,]*")
MAX_SCOPES: Final = 100
MAX_SCOPES_TEXT: Final = 2 * MAX_SCOPES - 1
DEFAULT_SCOPES: Final = ("read", "write")
DEFAULT_VALIDITY: Final = timedelta(days=365)
# Both dates are days, inclusive: a pass valid on one day has valid_from == valid_until.
VALIDITY_RULE: Final = "valid_until must not be before valid_from"


class AccessLevel(StrEnum):
    BASIC = "basic"
    STANDARD = "standard"
    PREMIUM = "premium"
    ENTERPRISE = "enterprise"


class UsageType(StrEnum):
    AI_ASSISTANT = "ai_assistant"
    AUTOMATION_TOOL = "automation_tool"
    INTEGRATION_SERVICE = "integration_service"
    MCP_SERVER = "mcp_server"
    API_CLIENT = "api_client"
    DATA_PROCESSOR = "data_processor"
    MONITORING_SYSTEM = "monitoring_system"
    OTHER = "other"


class PassStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


def normalise_agent_type(value: Any) -> Any:
    """`Sourcing Agent` → `sourcing_agent`: lowercase, runs of anything else one `_`."""
    if not isinstance(value, str):
        return value
    return re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")


def parse_scopes(value: Any) -> Any:
    """A comma- (or space-) separated string or a list → the scopes, each once, in order."""
    if isinstance(value, str):
        if len(value) > MAX_SCOPES_TEXT or not SCOPES_TEXT_PATTERN.fullmatch(value):
            raise ValueError(
                "scopes separated by commas or spaces, each letters, digits and `_ . : -` "
                f"(at most 64 characters, e.g. read:data), at most {MAX_SCOPES_TEXT} in all"
            )
        value = [part for part in re.split(r"[ ,]+", value) if part]
    elif isinstance(value, list | tuple):
        # Counted as sent, before repeats fold: the document's maxItems is about the list.
        if len(value) > MAX_SCOPES:
            raise ValueError(f"at most {MAX_SCOPES} scopes")
        for scope in value:
            if not isinstance(scope, str) or not SCOPE_PATTERN.fullmatch(scope):
                raise ValueError(
                    f"{scope!r} is not a scope: letters, digits and `_ . : -`, "
                    "at most 64 characters (e.g. read:data)"
                )
    else:
        return value
    return list(dict.fromkeys(value))


# What a client may send (the document shows this): the string or the list form.
SCOPES_INPUT_SCHEMA: Final = {
    "anyOf": [
        {
            "type": "string",
            "pattern": f"^{SCOPES_TEXT_PATTERN.pattern}$",
            "maxLength": MAX_SCOPES_TEXT,
        },
        {
            "type": "array",
            "items": {"type": "string", "pattern": f"^{_SCOPE}$"},
            "minItems": 1,
            "maxItems": MAX_SCOPES,
        },
    ]
}


AgentName = Annotated[str, StringConstraints(max_length=100, pattern=AGENT_NAME_PATTERN)]
# Any text with a letter or a digit: normalised, it is not empty, and never longer.
AgentType = Annotated[
    str,
    BeforeValidator(normalise_agent_type),
    StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$"),
    WithJsonSchema({"type": "string", "maxLength": 64, "pattern": "[A-Za-z0-9]"}),
]


def _iso_date(value: Any) -> Any:
    """`YYYY-MM-DD` only: the document says `format: date`, and pydantic's lax mode would
    also take a number of seconds or a date-time."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("an ISO 8601 date is expected, e.g. 2026-11-27")
    return date.fromisoformat(value)


IsoDate = Annotated[
    date, BeforeValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date"})
]
Scopes = Annotated[
    list[str],
    BeforeValidator(parse_scopes),
    Field(min_length=1, max_length=MAX_SCOPES),
    WithJsonSchema(SCOPES_INPUT_SCHEMA),
]
ShortText = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=5000)]


class _Dates(BaseModel):
    @model_validator(mode="after")
    def _ordered(self) -> Any:
        start, end = getattr(self, "valid_from", None), getattr(self, "valid_until", None)
        if start is not None and end is not None and end < start:
            raise ValueError(VALIDITY_RULE)
        return self


class PassCreate(_Dates):
    """What `POST /v1/projects/{p}/passes` accepts."""

    model_config = ConfigDict(extra="forbid")

    agent_name: AgentName = Field(description="Letters, digits and spaces.")
    agent_type: AgentType = Field(description="Normalised to lowercase with underscores.")
    description: LongText | None = None
    pass_id: Annotated[str, StringConstraints(pattern=PASS_ID_PATTERN)] | None = Field(
        None, description="SP-YYYY-XXXXXX; generated when absent."
    )
    access_level: AccessLevel = AccessLevel.STANDARD
    organization: ShortText | None = None
    usage_type: UsageType = UsageType.AUTOMATION_TOOL
    valid_from: IsoDate | None = Field(
        None, description="Default: today (UTC), or valid_until when that is earlier."
    )
    valid_until: IsoDate | None = Field(None, description="Default: one year after valid_from.")
    scopes: Scopes = Field(
        default_factory=lambda: list(DEFAULT_SCOPES),
        description="A list, or one comma-separated string (`read:data,write:data`).",
    )
    integration_notes: LongText | None = None
    credential_type: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")] = "api_key"

    def validity(self, today: date) -> tuple[date, date]:
        """valid_from defaults to today, or to valid_until when that is earlier (a pass
        made already expired, shown as such); valid_until to a year after valid_from."""
        if self.valid_from is not None:
            start = self.valid_from
        else:
            start = min(today, self.valid_until) if self.valid_until else today
        return start, self.valid_until or _one_year_after(start)


# Fields a pass always has: PATCH may change them, not clear them.
_REQUIRED_IN_RECORD: Final = (
    "agent_name",
    "agent_type",
    "access_level",
    "usage_type",
    "valid_from",
    "valid_until",
    "scopes",
)


def _not_nullable(schema: dict[str, Any]) -> None:
    """The document says what the validator says: these fields may be absent, not null."""
    for name in _REQUIRED_IN_RECORD:
        field = schema["properties"][name]
        branches = [b for b in field.pop("anyOf", []) if b != {"type": "null"}]
        if len(branches) == 1:
            field.update(branches[0])
        elif branches:
            field["anyOf"] = branches
        field.pop("default", None)


class PassUpdate(_Dates):
    """What `PATCH …/passes/{pass_id}` accepts: any of these; the rest stays."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_not_nullable)

    @field_validator(*_REQUIRED_IN_RECORD, mode="before")
    @classmethod
    def _present_means_a_value(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null: leave the field out to keep its value")
        return value

    agent_name: AgentName | None = None
    agent_type: AgentType | None = None
    description: LongText | None = None
    access_level: AccessLevel | None = None
    organization: ShortText | None = None
    usage_type: UsageType | None = None
    valid_from: IsoDate | None = None
    valid_until: IsoDate | None = None
    scopes: Scopes | None = None
    integration_notes: LongText | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the request set (an explicit null clears an optional text)."""
        return self.model_dump(exclude_unset=True)


class SentinelPass(BaseModel):
    """A pass as the store holds it (never its secret: only the hash); the API's view of
    a pass is this model (api/models.py PassView), so its fields are declared once."""

    model_config = ConfigDict(frozen=True)

    pass_id: str
    project_id: str
    client_id: str
    agent_name: str
    agent_type: str
    description: str | None
    access_level: AccessLevel
    organization: str | None
    usage_type: UsageType
    valid_from: date
    valid_until: date
    scopes: tuple[str, ...]
    integration_notes: str | None
    credential_type: str
    status: PassStatus
    revoked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    credential_version: int

    # pydantic's documented form; mypy does not accept a decorator over @property.
    @computed_field(description="What the card shows: revoked wins over the status toggle.")  # type: ignore[prop-decorator]
    @property
    def state(self) -> Literal["active", "inactive", "revoked"]:
        """What a card shows: a revocation wins over the status toggle."""
        return "revoked" if self.revoked_at is not None else self.status.value

    def exchange_refusal(self, now: datetime) -> str | None:
        """Why this pass may not exchange its credentials now; None when it may."""
        today = now.astimezone(UTC).date()
        if self.revoked_at is not None:
            return "the pass is revoked"
        if self.status is not PassStatus.ACTIVE:
            return "the pass is inactive"
        if today < self.valid_from:
            return f"the pass is valid from {self.valid_from.isoformat()}"
        if today > self.valid_until:
            return f"the pass expired on {self.valid_until.isoformat()}"
        return None

    def valid_through(self) -> datetime:
        """The end of the last valid day (UTC): no token outlives it."""
        if self.valid_until >= date.max - timedelta(days=1):
            return datetime.max.replace(tzinfo=UTC)
        return datetime.combine(self.valid_until + timedelta(days=1), datetime.min.time(), UTC)


def _one_year_after(start: date) -> date:
    if start.year >= date.max.year:
        return date.max
    try:
        return start.replace(year=start.year + 1)
    except ValueError:  # 29 February
        return start + DEFAULT_VALIDITY
