"""Event ids for the gateway's hot path: unique like uuid4, at the cost of a counter."""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Final

_COUNTER_SPAN: Final = 1 << 48  # the last 12 hex digits


class EventIds:
    """Version-4-shaped UUID strings: a random prefix (74 random bits) drawn per process,
    again in a forked child and after 2**48 ids, then a counter in the last 12 hex digits.

    `uuid.uuid4()` reads the OS's random source for every id, a few microseconds a call
    on a busy gateway; two processes share a prefix with probability 2**-74, so the ids
    are as unique as uuid4's for deduplication (they are not secrets, and not meant to
    be unguessable)."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]  # xxxxxxxx-xxxx-4xxx-Vxxx-
        self._counter = itertools.count()

    def next(self) -> str:
        n = next(self._counter)
        if n >= _COUNTER_SPAN:
            self._renew()
            n = next(self._counter)
        return "%s%012x" % (self._prefix, n)  # noqa: UP031 - half an f-string's cost here
