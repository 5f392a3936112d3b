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


def run_worker(app: faust.App, loglevel: str = "INFO") -> None:
    """Run the Faust worker in this process until SIGINT/SIGTERM; Faust owns the signals."""
    worker = BoundedShutdownWorker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def return_freed_memory(every_seconds: float) -> threading.Event | None:
    """Every `every_seconds`, in a thread of its own, give the pages glibc's heap holds
    free back to the system (`malloc_trim(0)`, which releases free pages inside the heap,
    not only at its top). glibc raises its mmap threshold to the size of each mapped block
    freed, so after the first batches Arrow's batch buffers come from the heap, and what a
    batch freed stayed resident for the next. Set the event to stop. None, and nothing
    started, with `every_seconds` 0 or where the C library is not glibc.

    Measured in the stream bench (2 million events, six alternated rounds; README
    Benchmarks), every 250 ms: peak RSS 930-974 MiB against 1,025-1,056, the stream's
    mean rate the same (117k events/s). Fixing the mmap threshold at 128 KiB instead
    saved ~150 MiB but cost 8-24% of the stream (each large buffer then a fresh mapping,
    its pages faulted in again)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None or every_seconds <= 0:
        return None
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_seconds):
            trim(0)  # ctypes releases the GIL around the call

    threading.Thread(target=run, name="malloc-trim", daemon=True).start()
    return stop
