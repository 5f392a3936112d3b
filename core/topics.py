"""Kafka topic names (DESIGN.md conventions). Keys are always `pass_id`."""

from typing import Final

EVENTS: Final = "sentinel.usage.events"
ROLLUPS: Final = "sentinel.usage.rollups"
ALERTS: Final = "sentinel.usage.alerts"
DLQ: Final = "sentinel.usage.dlq"

ALL: Final = (EVENTS, ROLLUPS, ALERTS, DLQ)

# The stream workers' consumer group (and Faust's app id).
CONSUMER_GROUP: Final = "sentinel-usage"
