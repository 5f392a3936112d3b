"""An ingest request's events, validated once and packed: what is published is what
was validated, and each refusal says which event and why."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_usage.core.columns import validate_events
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import decode_message
from sentinel_usage.ingest.batches import NOT_GRANTED, EventIngest, IngestBatch, prepare_batch
from sentinel_usage.ingest.body import BodyError, LineError, TooManyEventsError
from sentinel_usage.ingest.producer import Publisher
from tests.factories import raw_event
from tests.unit.core.test_columns import VALIDATOR as COLUMNS_VALIDATOR
from tests.unit.stream.test_json_envelopes import compact, event, events

VALIDATOR = EventValidator()


def test_valid_events_are_published_as_validated_and_the_rest_refused_by_index() -> None:
    items = [
        raw_event(pass_id="SP-a", http_method=" get "),  # normalised on the way
        LineError("line 2 is not JSON"),
        raw_event(status_code=42),
        raw_event(project_id="other"),
        raw_event(pass_id="SP-b"),
    ]
    batch = prepare_batch(items, VALIDATOR, lambda project: project != "other", lambda p: 0)
    assert [index for index, _ in batch.rejected] == [1, 2, 3]
    assert batch.rejected[0][1] == [{"field": "", "message": "line 2 is not JSON"}]
    assert batch.rejected[1][1][0]["field"] == "status_code"
    assert batch.rejected[2][1] == [NOT_GRANTED]
    assert batch.accepted == 2
    (envelope,) = batch.envelopes  # one partition: one message
    carried = decode_message(envelope.payload).columns
    assert carried is not None
    expected = validate_events([items[0], items[4]], VALIDATOR).table.drop_columns(["row"])
    assert carried.equals(expected)
    assert carried.column("http_method").to_pylist() == ["GET", "GET"]


@given(st.lists(st.one_of(events, st.builds(event)), max_size=8), st.booleans())
@settings(max_examples=300, deadline=None)
def test_a_body_read_as_columns_is_prepared_as_its_objects_are(
    items: list[Any], null_metadata: bool
) -> None:
    """A compact JSON array is read straight into columns (core.wire.read_json_array);
    the same body in another layout goes through orjson's objects: the same batch."""
    ingest = EventIngest(COLUMNS_VALIDATOR, cast(Publisher, None), max_events=1000)
    body = compact(items)
    if null_metadata:  # refused by the model, read as absent by Arrow
        body = body.replace(b'{"event_id"', b'{"metadata":null,"event_id"', 1)

    def prepared(text: bytes) -> IngestBatch | str:
        try:
            return ingest.prepare(text, "application/json", lambda p: p != "other", lambda p: 0)
        except BodyError as exc:  # json writes what JSON has not (Infinity, NaN)
            return str(exc).split(":")[0]

    by_columns, by_objects = prepared(body), prepared(b" " + body)
    if isinstance(by_columns, str) or isinstance(by_objects, str):
        assert by_columns == by_objects  # refused alike
        return
    assert by_columns.rejected == by_objects.rejected
    assert [decode_message(e.payload).columns for e in by_columns.envelopes] == [
        decode_message(e.payload).columns for e in by_objects.envelopes
    ]
    assert [e[::2] for e in by_columns.envelopes] == [e[::2] for e in by_objects.envelopes]


def test_too_many_events_read_as_columns_are_refused_as_a_whole() -> None:
    ingest = EventIngest(COLUMNS_VALIDATOR, cast(Publisher, None), max_events=2)
    with pytest.raises(TooManyEventsError):
        ingest.prepare(compact([event()] * 3), None, lambda p: True, lambda p: 0)
