"""Opening ClickHouse: a server over HTTP, or the in-process chDB engine.

Both go through clickhouse-connect's synchronous client; the in-process
engine allows one data directory per process (a second process opening it
fails), and its client has no async variant, so async callers use threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from sentinel_usage.core.errors import DependencyUnavailableError, StorageError

# Errors that mean "ClickHouse is not there right now": retry, never dead-letter.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, ConnectionError, OSError)


@contextmanager
def storage_call(what: str) -> Iterator[None]:
    """Map ClickHouse's failures to the two retryable kinds callers handle:
    unreachable (DependencyUnavailableError) and refused (StorageError).

    chDB reports a read-only data directory, a full disk or too many parts as
    a DatabaseError (code 1001 and others, measured); retrying only "unreachable"
    once crashed the sink on those and dropped its batch (issue 11)."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise DependencyUnavailableError(f"{what} failed: ClickHouse unreachable: {exc}") from exc
    except ClickHouseError as exc:
        raise StorageError(f"{what} failed: {exc}") from exc


def connect(dsn: str, database: str | None = None, **settings: Any) -> Any:
    """A clickhouse-connect client for `dsn` (`http(s)://...` or `chdb:///path`)."""
    try:
        return clickhouse_connect.get_client(dsn=dsn, database=database, settings=settings or None)
    except UNAVAILABLE_ERRORS as exc:
        raise DependencyUnavailableError(
            f"ClickHouse unreachable at {_redact(dsn)}: {exc}"
        ) from exc


def _redact(dsn: str) -> str:
    """The DSN without credentials, for error messages and logs."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
