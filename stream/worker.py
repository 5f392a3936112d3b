"""Running the Faust worker in this process, with a shutdown that cannot hang."""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any

import faust
import structlog

log = structlog.get_logger(__name__)


class BoundedShutdownWorker(faust.Worker):
    """A Faust worker whose shutdown cannot hang: once a stop signal arrived, the
    process exits after `shutdown_seconds` whatever is still pending (aiokafka's
    consumer thread was seen to hang when the broker went away first). Nothing
    is lost by it: offsets not committed are redelivered and deduplicated."""

    shutdown_seconds: float = 8.0

    def _schedule_shutdown(self, signal: Any) -> None:  # mode.Worker's signal hook
        watchdog = threading.Timer(self.shutdown_seconds, self._give_up)
        watchdog.daemon = True
        watchdog.start()
        super()._schedule_shutdown(signal)

    def on_setup_root_logger(self, logger: Any, level: int) -> None:
        # Faust hangs a terminal spinner on a root logger of WARNING or above and, so that
        # it spins on every record, sets that logger to DEBUG: every debug call of aiokafka
        # and Faust then built a LogRecord for the handlers to drop (6% of the `up`
        # process's busy time under ingest load, measured with py-spy). No spinner here
        # (quiet, not a terminal): the root logger keeps the configured level.
        self.spinner = None

    def _give_up(self) -> None:
        log.error("shutdown_timeout", seconds=self.shutdown_seconds)
        os._exit(1)


# glibc's mallopt parameter, and the threshold above which a block gets its own mapping
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def fix_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold at its 128 KiB start. glibc raises it to the size of
    every mapped block freed (up to 32 MiB), so after the first batches the worker's
    Arrow buffers came from the heap, which keeps what they freed: fixed, each large
    buffer is its own mapping, returned when freed. In the stream bench (2 million
    events, two alternated rounds) the worker's peak RSS was 789 and 807 MiB against
    943 and 968, for 5-9% of the stream (99k and 93k events/s against 108k and 104k);
    a 1 or 4 MiB threshold saved about half as much. False where the C library is not
    glibc (nothing is changed)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def run_worker(app: faust.App, loglevel: str = "INFO") -> None:
    """Run the Faust worker in this process until SIGINT/SIGTERM; Faust owns the signals."""
    worker = BoundedShutdownWorker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
