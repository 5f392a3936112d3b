"""What a migration may depend on besides the schema itself."""

from dataclasses import dataclass


@dataclass(frozen=True)
class MigrationContext:
    retention_days: int = 90
