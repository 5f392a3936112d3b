"""Running the Faust worker in this process, with a shutdown that cannot hang."""

from __future__ import annotations

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
