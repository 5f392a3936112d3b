"""A throwaway PostgreSQL 15 server from Debian's binaries, for the registry's tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sentinel_usage.cli.tansu import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server in a temporary directory; yield its asyncpg URL; remove it all.

    initdb refuses to run as root, so as root the server runs as Debian's `postgres`
    user, in a directory of its own (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="sentinel-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "server.log"
    port = free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True)

    try:
        run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "sentinel", "--auth=trust", "-E", "UTF8")
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            yield f"postgresql+asyncpg://sentinel@127.0.0.1:{port}/postgres"
        finally:
            run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)
