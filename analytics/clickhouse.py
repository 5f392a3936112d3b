"""ClickHouse, the one door: a server over HTTP or the in-process chDB engine.

Every statement of analytics/ goes through `ClickHouse`, which maps failures to
the two retryable kinds callers handle, reads datetimes as aware UTC, and reads
a tenant's rows only through a ScopedQuery (analytics/scope.py), so a tenant
query without its project filter cannot be written. clickhouse-connect's client
is synchronous (chDB's has no async variant): async callers go through the
thread pool of analytics/facade.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from sentinel_usage.analytics.scope import ScopedQuery
from sentinel_usage.core.errors import DependencyUnavailableError, StorageError

# Errors that mean "ClickHouse is not there right now": retry, never dead-letter.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, ConnectionError, OSError)

# clickhouse-connect returns DateTime64(3, 'UTC') values as naive datetimes by default;
# "aware" gives them tzinfo=UTC, so no reader converts them again.
_AWARE: Final = "aware"


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


class ClickHouse:
    """Blocking, like the client it wraps; safe to share between threads (each call
    is one request, or one chDB query). Raises DependencyUnavailableError or
    StorageError, never the driver's own exceptions."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def close(self) -> None:
        """Release the connection; for chDB, the last one closed stops the engine and its
        background merges (a data directory removed while they ran could not be)."""
        self._client.close()

    # A tenant's rows: the only read the API's queries make.

    def select(
        self, query: ScopedQuery, columns: str, tail: str = "", **parameters: Any
    ) -> list[tuple[Any, ...]]:
        """`SELECT columns FROM query's table WHERE <project filter> AND ... tail`."""
        sql, bound = query.render(columns, tail, parameters)
        return self.unscoped_rows(sql, bound, what=f"{query.table} query")

    # The pipeline's own statements, over every tenant at once (the sink's lookups,
    # reconciliation, migrations, tests' checks). Never called on a user's behalf.

    def unscoped_rows(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, what: str
    ) -> list[tuple[Any, ...]]:
        with storage_call(what):
            result = self._client.query(sql, parameters=parameters, tz_mode=_AWARE)
            return list(result.result_rows)

    def arrow(self, sql: str, parameters: Mapping[str, Any], *, what: str) -> pa.Table:
        with storage_call(what):
            return self._client.query_arrow(sql, parameters=parameters)

    @contextmanager
    def column_blocks(
        self, sql: str, parameters: Mapping[str, Any], *, what: str
    ) -> Iterator[Iterator[Sequence[Sequence[Any]]]]:
        """The result block by block as ClickHouse sends it, each a list of columns
        (bounded memory). In the Native format: clickhouse-connect's chDB backend
        streams only formats without a global header, and reads an Arrow "stream"
        whole (measured: 1.5 million ids raised the worker's peak memory by ~300 MB
        this way, by ~15 MB block by block)."""
        with (
            storage_call(what),
            self._client.query_column_block_stream(sql, parameters=parameters) as blocks,
        ):
            yield blocks

    def command(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        what: str = "command",
        settings: Mapping[str, Any] | None = None,
    ) -> Any:
        with storage_call(what):
            return self._client.command(sql, parameters=parameters, settings=settings)

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        with storage_call(f"{table} insert"):
            self._client.insert(table, rows, column_names=columns)

    def insert_arrow(self, table: str, block: pa.Table) -> None:
        with storage_call(f"{table} insert"):
            self._client.insert_arrow(table, block)

    def now(self) -> datetime:
        """ClickHouse's clock (the one `ingested_at` and `updated_at` are written with)."""
        ((now,),) = self.unscoped_rows("SELECT now64(3, 'UTC')", what="clock")
        return now  # type: ignore[no-any-return]


def connect(dsn: str, database: str | None = None, **settings: Any) -> ClickHouse:
    """ClickHouse at `dsn` (`http(s)://...` or `chdb:///path`)."""
    try:
        client = clickhouse_connect.get_client(
            dsn=dsn, database=database, settings=settings or None
        )
    except UNAVAILABLE_ERRORS as exc:
        raise DependencyUnavailableError(
            f"ClickHouse unreachable at {_redact(dsn)}: {exc}"
        ) from exc
    return ClickHouse(client)


def _redact(dsn: str) -> str:
    """The DSN without credentials, for error messages and logs."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
