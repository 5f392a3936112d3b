"""Kafka topic names (DESIGN.md conventions). Keys are always `pass_id`."""

from typing import Final

EVENTS: Final = "sentinel.usage.events"
ROLLUPS: Final = "sentinel.usage.rollups"
ALERTS: Final = "sentinel.usage.alerts"
DLQ: Final = "sentinel.usage.dlq"
# The registry's lifecycle changes, one record per pass (compacted; a tombstone on delete).
PASSES: Final = "sentinel.passes"

ALL: Final = (EVENTS, ROLLUPS, ALERTS, DLQ, PASSES)
COMPACTED: Final = frozenset({PASSES})

# The stream workers' consumer group (and Faust's app id).
CONSUMER_GROUP: Final = "sentinel-usage"
