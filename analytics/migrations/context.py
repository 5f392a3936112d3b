"""What a migration may depend on besides the schema itself."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from sentinel_usage.core.settings import Settings
from sentinel_usage.core.windows import DEFAULT_TIERS


def _default_tier_retention() -> dict[str, int]:
    return {tier.table: tier.retention_days for tier in DEFAULT_TIERS}


@dataclass(frozen=True)
class MigrationContext:
    retention_days: int = 90  # the raw log's, and the alerts'
    # Each rollup tier's table and its retention (core/windows.py).
    rollup_retention_days: Mapping[str, int] = field(default_factory=_default_tier_retention)

    @classmethod
    def from_settings(cls, settings: Settings) -> "MigrationContext":
        return cls(
            retention_days=settings.retention_days,
            rollup_retention_days={t.table: t.retention_days for t in settings.rollup_tiers},
        )
