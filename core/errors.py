"""Error types shared by every layer.

User errors (bad input, unknown pass) and system errors (a dependency is down)
are different types; the API maps them to HTTP statuses in one place.
"""

from __future__ import annotations


class SentinelError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(SentinelError):
    """The settings are invalid or insecure for the chosen mode."""


class InvalidRecordError(SentinelError):
    """What a producer wrote is at fault, not a dependency: the record goes to the
    dead-letter topic with this reason and its source; retrying cannot help."""


class RetryLaterError(SentinelError):
    """Back-pressure: a dependency cannot take the work now and the same work can
    succeed later. Retried with back-off; never a reason to dead-letter or skip."""


class InvalidEventError(InvalidRecordError):
    """An event failed validation; `errors` says which field and why."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


class DependencyUnavailableError(RetryLaterError):
    """Kafka or ClickHouse could not be reached: retry later, do not dead-letter."""


class StorageError(RetryLaterError):
    """ClickHouse was reached but refused a write or a read (a read-only or full disk,
    too many parts, a server-side error): retry with back-off, never skip the data.
    Validated rows are never the cause, so nothing is dead-lettered for it."""
