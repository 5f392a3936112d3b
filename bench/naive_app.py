"""The approach a first implementation takes: a Faust agent reading one Kafka message
per event, decoding each with the event model, inserting 1,000 rows at a time."""

from __future__ import annotations

import os
from pathlib import Path

import faust
import orjson

from sentinel_usage.analytics.clickhouse import connect
from sentinel_usage.analytics.migrate import migrate
from sentinel_usage.analytics.migrations.context import MigrationContext
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.events import EventValidator

data = Path(os.environ["BENCH_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
client = connect(f"chdb://{data / 'ch'}")
migrate(client, MigrationContext())
writer = ActivityLogWriter(client)
validator = EventValidator()

app = faust.App(
    "bench-naive",
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    value_serializer="raw",
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=6,
    broker_rebalance_timeout=6,
    broker_heartbeat_interval=1,
    datadir=str(data / "faust"),
)
topic = app.topic("bench.naive", value_type=bytes)


@app.agent(topic)
async def sink(stream):  # type: ignore[no-untyped-def]
    async for values in stream.take(1000, within=1):
        writer.write([validator.validate(orjson.loads(v)) for v in values])


if __name__ == "__main__":
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
