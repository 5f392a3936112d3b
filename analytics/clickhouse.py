"""Opening ClickHouse: a server over HTTP, or the in-process chDB engine.

Both go through clickhouse-connect's synchronous client; the in-process
engine allows one data directory per process (a second process opening it
fails), and its client has no async variant, so async callers use threads.
"""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from sentinel_usage.core.errors import DependencyUnavailableError

# Errors that mean "ClickHouse is not there right now": retry, never dead-letter.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, ConnectionError, OSError)
QUERY_ERRORS: tuple[type[BaseException], ...] = (DatabaseError,)


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
