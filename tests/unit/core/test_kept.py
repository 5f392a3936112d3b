import tracemalloc
from collections.abc import Callable

import orjson

from sentinel_usage.core.kept import dumps_kept

STATE = {"a": list(range(200)), "p": "project-1", "s": "SP-1"}


def traced(make: Callable[[], bytes]) -> tuple[bytes, int]:
    """What `make` returns, and the memory allocated for it that is still held."""
    tracemalloc.start()
    try:
        made = make()
        return made, sum(s.size for s in tracemalloc.take_snapshot().statistics("filename"))
    finally:
        tracemalloc.stop()


def test_kept_bytes_are_the_json_and_hold_no_more_memory_than_it() -> None:
    """orjson 3.13's own bytes for this ~800-byte state hold ~32 KB: a store of
    thousands of window states held hundreds of MB."""
    kept, size = traced(lambda: dumps_kept(STATE))
    assert kept == orjson.dumps(STATE)
    assert size < 2 * len(kept) + 1024
