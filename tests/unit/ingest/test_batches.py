"""An ingest request's events, validated once and packed: what is published is what
was validated, and each refusal says which event and why."""

from __future__ import annotations

from sentinel_usage.core.columns import validate_events
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import decode_message
from sentinel_usage.ingest.batches import NOT_GRANTED, prepare_batch
from sentinel_usage.ingest.body import LineError
from tests.factories import raw_event

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
