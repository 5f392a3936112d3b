"""Events as columns: many raw events validated and normalised at once with pyarrow.

`validate_events` gives, for a list of untrusted JSON objects, exactly what
`EventValidator.validate` gives for each one (the valid events, normalised, and
each invalid one with its errors), but as an Arrow table built column by column:
per-event Python work is a few list comprehensions; the checks (identifiers,
UUIDs, ranges, timestamps) run in Arrow's kernels. A row the vectorised checks do
not accept (anything unusual: a missing id, a number sent as text, a date form
other than `YYYY-MM-DDTHH:MM:SS[.f][Z|±HH:MM]`) is validated alone by the model,
which also gives the precise error. Equivalence with the model is a property
test (tests/unit/core/test_columns.py). `validate_json_events` runs the same checks on
events that pyarrow.json read into columns (core/wire.py), with no Python object at all.

Why: per-event pydantic objects held the worker near 10k events/s (issue 6's
profile); this path costs a few microseconds per event.
"""

from __future__ import annotations

import functools
import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from ipaddress import ip_address
from itertools import repeat
from types import UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc

from sentinel_usage.core.endpoints import normalise_endpoint
from sentinel_usage.core.errors import InvalidEventError
from sentinel_usage.core.events import (
    ACTIVITY_TYPES,
    ERROR_ACTIVITY,
    ERROR_STATUS,
    IDENTIFIER_FIELDS,
    IDENTIFIER_PATTERN,
    MAX_DURATION_MS,
    MAX_ENDPOINT_CHARS,
    MAX_IDENTIFIER_CHARS,
    METHOD_PATTERN,
    STATUS_RANGE,
    TEXT_LIMITS,
    EventValidator,
    UsageEvent,
    ValidationPolicy,
    metadata_json,
)


def _column_type(annotation: Any) -> pa.DataType:
    """The column of a UsageEvent field: its type, `None` aside. Ids (UUID) are text in
    canonical form (lower-case, hyphenated), choices (Literal) text, and metadata
    (dict) JSON text."""
    kinds = [a for a in get_args(annotation) if a is not type(None)]
    kind = kinds[0] if get_origin(annotation) in (Union, UnionType) else annotation
    if get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) is Literal:
        return pa.string()
    return _COLUMN_TYPES[get_origin(kind) or kind]


_COLUMN_TYPES: Final[dict[Any, pa.DataType]] = {
    str: pa.string(),
    uuid.UUID: pa.string(),
    dict: pa.string(),
    datetime: pa.timestamp("ms", tz="UTC"),
    int: pa.int64(),
    bool: pa.bool_(),
    float: pa.float64(),
}

# The validated, normalised form, derived from UsageEvent (one declaration: a field
# added there is a column here, on the wire and in the writer); `row` is the event's
# index in the input.
EVENT_SCHEMA: Final = pa.schema(
    [("row", pa.int64())]
    + [(name, _column_type(f.annotation)) for name, f in UsageEvent.model_fields.items()]
)
# The fields an event may leave out, null then (an older columnar batch may lack them).
OPTIONAL_FIELDS: Final = frozenset(
    name for name, f in UsageEvent.model_fields.items() if not f.is_required() and f.default is None
)
# Optional texts: null here, '' in ClickHouse, None again when read back.
NULLABLE_TEXT: Final = tuple(
    name
    for name in EVENT_SCHEMA.names
    if name in OPTIONAL_FIELDS and EVENT_SCHEMA.field(name).type == pa.string()
)
WIRE_FIELDS: Final = frozenset(UsageEvent.model_fields)
_MISSING: Final = object()
# What arrives as JSON text (converted, checked, normalised afterwards).
_TEXT_FIELDS: Final = tuple(
    name
    for name in EVENT_SCHEMA.names[1:]
    if EVENT_SCHEMA.field(name).type in (pa.string(), pa.timestamp("ms", tz="UTC"))
    and name != "metadata"
)
_TEXT_STRUCT: Final = pa.struct([(name, pa.string()) for name in _TEXT_FIELDS])
_UUID: Final = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
# The one timestamp form checked here (anything else goes to the model):
# calendar date, time to the second, 1 to 6 fraction digits, then Z, an offset or nothing.
_TIMESTAMP: Final = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?$"
)
_ZONED_TIMESTAMP: Final = _TIMESTAMP.replace(")?$", ")$")  # the same, with a zone
_MILLIS: Final = pa.timestamp("ms", tz="UTC")
_INT64: Final = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class ValidatedEvents:
    table: pa.Table  # EVENT_SCHEMA, valid rows in input order
    rejected: list[tuple[int, InvalidEventError]]  # (input index, errors), in input order


def validate_events(raws: Sequence[Any], validator: EventValidator) -> ValidatedEvents:
    """Every valid event of `raws` as a row of EVENT_SCHEMA; every other one rejected."""
    n = len(raws)
    if n == 0:
        return ValidatedEvents(EVENT_SCHEMA.empty_table(), [])
    policy = validator.policy
    dicts: Sequence[Any] = raws
    fast = np.ones(n, dtype=bool)
    if not all(type(raw) is dict for raw in raws) or not set().union(*raws) <= WIRE_FIELDS:
        fast = np.fromiter(
            (type(raw) is dict and raw.keys() <= WIRE_FIELDS for raw in raws), bool, n
        )
        dicts = [raw if ok else {} for raw, ok in zip(raws, fast, strict=True)]

    def get(name: str, default: Any = None) -> list[Any]:
        return list(map(dict.get, dicts, repeat(name), repeat(default)))

    columns: dict[str, pa.Array] = {}
    try:
        # One conversion for all text fields (a struct ignores other keys); it
        # fails as a whole for one value that is not text or null.
        text = pa.array(dicts, _TEXT_STRUCT)
        columns.update((name, text.field(name)) for name in _TEXT_FIELDS)
    except pa.ArrowException:
        for name in _TEXT_FIELDS:
            columns[name], ok = _typed(get(name), pa.string(), _is_str)
            fast &= ok
    for name, arrow_type, accepts in _TYPED_FIELDS:
        columns[name], ok = _typed(get(name), arrow_type, accepts)
        fast &= ok
    columns["metadata"], ok = _metadata(get("metadata", _MISSING), policy.max_metadata_depth)
    fast &= ok

    table, ok = _normalised(columns, n, policy)
    fast &= ok
    if fast.all():
        return ValidatedEvents(table, [])
    return _with_slow_rows(table.filter(pa.array(fast)), raws, np.flatnonzero(~fast), validator)


# The events of a JSON text as pyarrow.json reads them (core/wire.py reads envelopes so):
# each field in its column's type, but `started_at` as its text (checked and converted
# here) and `metadata` as an object of no fields (one with fields does not read).
JSON_EVENT: Final = pa.struct(
    [
        pa.field(f.name, pa.string() if f.name == "started_at" else f.type)
        if f.name != "metadata"
        else pa.field(f.name, pa.struct([]))
        for f in EVENT_SCHEMA
        if f.name != "row"
    ]
)


def validate_json_events(events: pa.StructArray, policy: ValidationPolicy) -> ValidatedJson:
    """Events as pyarrow.json read them (JSON_EVENT), checked and normalised as
    `validate_events` does it: the EVENT_SCHEMA rows and which of them passed.

    A row that did not pass is not an answer: the caller validates its JSON objects with
    `validate_events`, which says why or accepts what the vectorised checks do not (a
    missing id). Null metadata counts as absent (an empty object): the caller makes sure
    that the text held no explicit null, which the model refuses."""
    columns: dict[str, pa.Array] = {
        f.name: events.field(f.name) for f in JSON_EVENT if f.name != "metadata"
    }
    n = len(events)
    columns["metadata"] = pa.array(repeat("{}", n), pa.string())
    table, ok = _normalised(columns, n, policy)
    return ValidatedJson(table, ok)


@dataclass(frozen=True)
class ValidatedJson:
    table: pa.Table  # EVENT_SCHEMA, every row (use only those `ok`)
    ok: np.ndarray  # per row, whether it passed every check


def _normalised(
    columns: dict[str, pa.Array], n: int, policy: ValidationPolicy
) -> tuple[pa.Table, np.ndarray]:
    """The checked fields' columns as EVENT_SCHEMA (normalised: lower-case ids, upper-case
    methods, UTC timestamps, endpoint templates, derived success), and per row whether
    every check passed."""
    checks = _checks(columns, policy.clock.now(), policy.max_future_skew, policy.retention)
    normal = {
        **columns,
        "row": pa.array(np.arange(n, dtype=np.int64)),
        "event_id": checks.event_id,
        "started_at": checks.started_at,
        "endpoint": checks.endpoint,
        "http_method": checks.http_method,
        "success": checks.success,
        "client_ip": checks.client_ip,
    }
    table = pa.table([normal[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)
    return table, checks.ok


def _with_slow_rows(
    fast: pa.Table, raws: Sequence[Any], slow: np.ndarray, validator: EventValidator
) -> ValidatedEvents:
    """Validate the rows the vectorised checks left, one by one, with the model."""
    events: list[UsageEvent] = []
    rows: list[int] = []
    rejected: list[tuple[int, InvalidEventError]] = []
    for index in slow.tolist():
        try:
            events.append(validator.validate(raws[index]))
            rows.append(index)
        except InvalidEventError as exc:
            rejected.append((index, exc))
    if not events:
        return ValidatedEvents(fast, rejected)
    merged = pa.concat_tables([fast, events_table(events, rows)])
    return ValidatedEvents(merged.sort_by("row"), rejected)


def events_table(events: Sequence[UsageEvent], rows: Sequence[int] | None = None) -> pa.Table:
    """Validated event objects as EVENT_SCHEMA rows (`row` defaults to 0..n-1)."""
    columns: dict[str, Any] = {
        name: [getattr(e, name) for e in events]
        for name in EVENT_SCHEMA.names
        if name not in ("row", "event_id", "metadata")
    }
    columns["row"] = pa.array(range(len(events)) if rows is None else rows, pa.int64())
    columns["event_id"] = [str(e.event_id) for e in events]
    columns["metadata"] = [orjson.dumps(e.metadata).decode() for e in events]
    return pa.table(columns, schema=EVENT_SCHEMA)


KEY_SEPARATOR: Final = "\x1f"


def row_keys(*columns: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each row's values of `columns` as one string (for set and group operations in
    Arrow), joined by KEY_SEPARATOR; timestamps as epoch integers."""
    texts = [
        column.cast(pa.int64()).cast(pa.string()) if pa.types.is_timestamp(column.type)
        else column.cast(pa.string())
        for column in columns
    ]  # fmt: skip
    keys = pc.binary_join_element_wise(*texts, KEY_SEPARATOR)
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


def table_events(table: pa.Table) -> list[UsageEvent]:
    """EVENT_SCHEMA rows (with `row` or without) as event objects (for tests and tools;
    the pipeline stays columnar)."""
    out = []
    if "row" in table.column_names:
        table = table.drop_columns(["row"])
    for row in table.to_pylist():
        row["event_id"] = uuid.UUID(row["event_id"])
        row["metadata"] = orjson.loads(row["metadata"])
        out.append(UsageEvent.model_construct(**row))
    return out


# -- columns -----------------------------------------------------------------------


def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_int64(value: Any) -> bool:
    return type(value) is int and _INT64[0] <= value <= _INT64[1]


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _is_number(value: Any) -> bool:
    # Integers beyond 2**53 have no exact double (and exceed every range here).
    return (type(value) is float) or (type(value) is int and -(2**53) <= value <= 2**53)


def _typed(
    values: list[Any], arrow_type: pa.DataType, accepts: Callable[[Any], bool]
) -> tuple[pa.Array, np.ndarray]:
    """The column, and which rows hold a value of the accepted kind (or null).

    Arrow's conversion is not the model's (it turns True into 1.0 in a float
    column and 200.0 into 200 in an integer one), so the Python types are
    checked first; a wrong one sends its row to the model."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds <= _KINDS[arrow_type]:
        try:
            return pa.array(values, arrow_type), np.ones(len(values), dtype=bool)
        except (pa.ArrowException, OverflowError):
            pass  # an integer beyond 64 bits
    ok = np.fromiter((v is None or accepts(v) for v in values), bool, len(values))
    cleaned = [v if good else None for v, good in zip(values, ok, strict=True)]
    return pa.array(cleaned, arrow_type), ok


_ACCEPTS: Final[dict[pa.DataType, Callable[[Any], bool]]] = {
    pa.int64(): _is_int64,
    pa.bool_(): _is_bool,
    pa.float64(): _is_number,
}
# What arrives as a JSON number or boolean, and which Python values each column takes.
_TYPED_FIELDS: Final = tuple(
    (f.name, f.type, _ACCEPTS[f.type])
    for f in EVENT_SCHEMA
    if f.type in _ACCEPTS and f.name != "row"
)
_KINDS: Final[dict[pa.DataType, set[type]]] = {
    pa.string(): {str},
    pa.int64(): {int},
    pa.bool_(): {bool},
    pa.float64(): {int, float},
}


def _metadata(values: list[Any], max_depth: int) -> tuple[pa.Array, np.ndarray]:
    """`metadata` as JSON text (absent: `{}`); a row whose metadata is not a JSON
    object within the limits (`metadata_json`) goes to the model."""
    n = len(values)
    if values.count(_MISSING) == n:
        return pa.array(repeat("{}", n), pa.string()), np.ones(n, dtype=bool)
    texts: list[str | None] = []
    ok = np.ones(n, dtype=bool)
    for index, value in enumerate(values):
        if value is _MISSING or (type(value) is dict and not value):
            texts.append("{}")
            continue
        text = None
        if type(value) is dict:
            try:
                text = metadata_json(value, max_depth).decode()
            except ValueError:
                ok[index] = False
        else:
            ok[index] = False
        texts.append(text)
    return pa.array(texts, pa.string()), ok


@dataclass(frozen=True)
class _Checked:
    ok: np.ndarray
    event_id: pa.Array
    started_at: pa.Array
    endpoint: pa.Array
    http_method: pa.Array
    success: pa.Array
    client_ip: pa.Array


def _checks(
    c: dict[str, pa.Array], now: datetime, skew: timedelta, retention: timedelta
) -> _Checked:
    out = _project(pa.table(c), _CHECKS)
    started_at = _timestamps(c["started_at"])
    low, high = now - retention, now + skew
    endpoint = _map_unique(c["endpoint"], cached_endpoint)
    client_ip = _map_unique(c["client_ip"], lambda raw: cached_ip(raw.strip()))
    ok = out.column("ok").to_numpy() & _flags(
        _between(started_at, low, high),
        pc.or_kleene(pc.is_null(c["client_ip"]), pc.is_valid(client_ip)),
    )
    return _Checked(
        ok,
        out.column("event_id").combine_chunks(),
        started_at,
        endpoint,
        out.column("http_method").combine_chunks(),
        out.column("success").combine_chunks(),
        client_ip,
    )


def _checks_projection() -> dict[str, pc.Expression]:
    """The checks of a row that need neither the clock nor Python (the timestamp's range,
    endpoint and IP normalisation) as `ok` (null counts as failed), and the columns
    normalised on the way."""
    f = pc.field
    status, activity = f("status_code"), f("activity_type")
    is_error = activity == ERROR_ACTIVITY
    given = f("success").is_valid()
    # The success rule (UsageEvent._consistent_outcome), in columns: as given, or
    # derived (status < 400 and not an `error` activity); it may not contradict them.
    derived = (status < ERROR_STATUS) & ~is_error
    contradicts = f("success") & (pc.coalesce(status >= ERROR_STATUS, pc.scalar(False)) | is_error)
    underivable = ~given & status.is_null() & ~is_error
    conditions = [
        pc.match_substring_regex(f("event_id"), _UUID),
        *(pc.match_substring_regex(f(name), IDENTIFIER_PATTERN) for name in IDENTIFIER_FIELDS),
        *(_between(pc.utf8_length(f(name)), 1, MAX_IDENTIFIER_CHARS)
          for name in IDENTIFIER_FIELDS),
        pc.is_in(activity, value_set=pa.array(ACTIVITY_TYPES)),
        pc.match_substring_regex(f("http_method"), METHOD_PATTERN),
        _between(pc.utf8_length(f("endpoint")), 1, MAX_ENDPOINT_CHARS),
        status.is_null() | _between(status, *STATUS_RANGE),
        _between(f("duration_ms"), 0.0, MAX_DURATION_MS),
        *(f(name).is_null() | (pc.utf8_length(f(name)) <= limit)
          for name, limit in TEXT_LIMITS.items()),
        ~(pc.coalesce(contradicts, pc.scalar(False)) | underivable),
    ]  # fmt: skip
    return {
        "ok": pc.coalesce(functools.reduce(operator.and_, conditions), pc.scalar(False)),
        "event_id": pc.ascii_lower(f("event_id")),
        "http_method": pc.ascii_upper(f("http_method")),
        "success": pc.if_else(
            given, f("success"), pc.if_else(status.is_valid(), derived, pc.scalar(False))
        ),
    }


def _project(table: pa.Table, expressions: dict[str, pc.Expression]) -> pa.Table:
    """`expressions` over `table` in one Acero pass. One call, not one a kernel: each
    pyarrow.compute call holds the GIL ~10 µs around its kernel, which on a 1,000-event
    request cost more than the kernels (the HTTP ingest and the worker share the GIL in
    `up`); the plan runs them all without it. Single-threaded, it keeps the row order."""
    plan = acero.Declaration.from_sequence(
        [
            acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
            acero.Declaration(
                "project", acero.ProjectNodeOptions(list(expressions.values()), list(expressions))
            ),
        ]
    )
    return plan.to_table(use_threads=False)


def _flags(*conditions: pa.Array) -> np.ndarray:
    ok = np.ones(len(conditions[0]), dtype=bool)
    for condition in conditions:
        ok &= pc.fill_null(condition, False).to_numpy(zero_copy_only=False)
    return ok


def _between(values: Any, low: Any, high: Any) -> Any:
    """Arrays or expressions."""
    return pc.and_kleene(pc.greater_equal(values, low), pc.less_equal(values, high))


_CHECKS: Final = _checks_projection()


def _timestamps(text: pa.Array) -> pa.Array:
    """ISO 8601 text of the one form `_TIMESTAMP` admits, as UTC milliseconds
    (microseconds floored, as the model does); null for any other text or an
    impossible date (Feb 30).

    Text with a zone (what producers send) goes through Arrow's ISO 8601 cast,
    which checks the calendar too but fails the whole array for one bad date;
    the rest, and any array with a bad date, take `_timestamps_by_parts`."""
    try:
        out = _project(pa.table({"text": text}), _ZONED_STAMPS)
    except pa.ArrowInvalid:
        return _timestamps_by_parts(text)
    stamps = out.column("stamps").combine_chunks()
    if pc.all(out.column("zoned")).as_py():
        return stamps
    unzoned = pc.if_else(out.column("zoned").combine_chunks(), None, text)
    return pc.coalesce(stamps, _timestamps_by_parts(unzoned))


def _zoned_stamps() -> dict[str, pc.Expression]:
    zoned = pc.match_substring_regex(pc.field("text"), _ZONED_TIMESTAMP)
    text = pc.if_else(zoned, pc.field("text"), pc.scalar(pa.scalar(None, pa.string())))
    micros = text.cast(pa.timestamp("us", tz="UTC"))
    return {"zoned": zoned, "stamps": pc.floor_temporal(micros, unit="millisecond").cast(_MILLIS)}


_ZONED_STAMPS: Final = _zoned_stamps()


def _timestamps_by_parts(text: pa.Array) -> pa.Array:
    """`_timestamps` for any text: date and time by strptime, then fraction and
    offset from the text (slower: strftime checks that the date is real)."""
    text = pc.if_else(pc.match_substring_regex(text, _TIMESTAMP), text, None)
    head = pc.utf8_slice_codeunits(text, 0, 19)
    base = pc.strptime(head, format="%Y-%m-%dT%H:%M:%S", unit="ms", error_is_null=True)
    # strptime rolls Feb 30 over to Mar 2: a date is real when it prints back the same.
    # (%S prints the fraction of a millisecond timestamp: compare the first 19.)
    printed = pc.utf8_slice_codeunits(pc.strftime(base, format="%Y-%m-%dT%H:%M:%S"), 0, 19)
    real = pc.equal(printed, head)
    parts = pc.extract_regex(
        text, r"^.{19}(?:\.(?P<frac>\d{1,6}))?(?P<zone>Z|(?P<sign>[+-])(?P<hh>\d\d):(?P<mm>\d\d))?$"
    )
    frac = pc.utf8_slice_codeunits(pc.utf8_rpad(parts.field("frac"), 3, "0"), 0, 3)
    millis = pc.cast(pc.if_else(pc.equal(frac, ""), "000", frac), pa.int64())
    offset_minutes = pc.add(
        pc.multiply(pc.cast(_or(parts.field("hh"), "00"), pa.int64()), 60),
        pc.cast(_or(parts.field("mm"), "00"), pa.int64()),
    )
    sign = pc.if_else(pc.equal(parts.field("sign"), "-"), -1, 1)
    shift = pc.subtract(millis, pc.multiply(pc.multiply(offset_minutes, sign), 60_000))
    epoch_ms = pc.add(pc.cast(base, pa.int64()), shift)
    stamps = pc.cast(epoch_ms, _MILLIS)
    return pc.if_else(pc.fill_null(real, False), stamps, None)


def _or(values: pa.Array, default: str) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), default, values)


@lru_cache(maxsize=65_536)
def cached_endpoint(raw: str) -> str:
    return normalise_endpoint(raw)


@lru_cache(maxsize=65_536)
def cached_ip(raw: str) -> str | None:
    try:
        return ip_address(raw).compressed
    except ValueError:
        return None


def _map_unique(values: pa.Array, normalise: Callable[[str], str | None]) -> pa.Array:
    """`normalise` applied once per distinct value (None where it refuses one)."""
    encoded = pc.dictionary_encode(values)
    dictionary = [normalise(v) for v in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(dictionary, pa.string()), encoded.indices)
