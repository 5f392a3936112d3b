from __future__ import annotations

import orjson
import pytest

from sentinel_usage.ingest.body import BodyError, LineError, TooManyEventsError, parse_event_body


def test_one_object_array_and_ndjson() -> None:
    assert parse_event_body(b'{"a": 1}', "application/json", 10) == [{"a": 1}]
    assert parse_event_body(b'[{"a": 1}, 2]', "application/json; charset=utf-8", 10) == [
        {"a": 1},
        2,
    ]
    ndjson = b'{"a": 1}\n\n{"b": 2}\r\n'
    assert parse_event_body(ndjson, "application/x-ndjson", 10) == [{"a": 1}, {"b": 2}]


def test_a_bad_ndjson_line_keeps_its_place_and_spares_the_others() -> None:
    items = parse_event_body(b'{"a": 1}\n{oops\n{"b": 2}\n', "application/x-ndjson", 10)
    assert items[0] == {"a": 1}
    assert items[2] == {"b": 2}
    assert isinstance(items[1], LineError)
    assert "line 2 is not valid JSON" in items[1].message


@pytest.mark.parametrize("media", ["application/json", "application/x-ndjson"])
def test_too_many_events_says_the_limit(media: str) -> None:
    events = [{"i": i} for i in range(11)]
    body = (
        orjson.dumps(events)
        if media == "application/json"
        else b"\n".join(orjson.dumps(e) for e in events)
    )
    with pytest.raises(TooManyEventsError, match="11 events in one request; at most 10 allowed"):
        parse_event_body(body, media, 10)


@pytest.mark.parametrize(
    ("body", "media", "reason"),
    [
        (b"{nope", "application/json", "not valid JSON"),
        (b'"text"', "application/json", "must be a JSON object"),
        (b"a=1", "application/x-www-form-urlencoded", "unsupported content type"),
    ],
)
def test_unreadable_bodies_are_refused_as_a_whole(body: bytes, media: str, reason: str) -> None:
    with pytest.raises(BodyError, match=reason):
        parse_event_body(body, media, 10)
