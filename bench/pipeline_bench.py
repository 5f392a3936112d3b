"""Pipeline throughput, freshness, query latency and memory, measured in one run.

  stream  events/s from a pre-filled events topic to rows in ClickHouse (activity log
          and rollups): the real worker (`sentinel-usage worker`) in its own process;
          the topic holds JSON envelopes, as gateways and third-party producers write
          them (the worker validates their events)
  stream_columns  the same from columnar batches, as the HTTP ingest writes them
          (validated there: the worker reads them straight into columns)
  raw     the JSON topic read by a bare aiokafka consumer that decodes each message
          into columns, and nothing more (the ceiling)
  naive   one Kafka message per event through a minimal Faust agent, one insert per 1,000
  ingest  events/s through POST /v1/events, 1,000-event requests, concurrent clients,
          after a warm-up
  fresh   p50/p95 from the ingest response to the row in the activity endpoint and the
          request in the usage timeline, under background load at half the stream rate
  query   p50/p95 of the usage endpoint and an activity page over a large activity log
  rss     the worker's peak resident memory

The last line printed is the `bench:` summary.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import http_bench, query_bench
from bench.common import events, fill_topic, peak_rss_mb
from sentinel_usage.cli.tansu import TansuBroker
from sentinel_usage.core.wire import decode_message
from sentinel_usage.ingest.admin import ensure_topics

REPO = Path(__file__).resolve().parent.parent


def worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sentinel_usage.cli.main", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def committed(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(tps)
        done = 0
        for tp in tps:
            done += max(0, await consumer.committed(tp) or 0)
        return done, sum(ends.values())
    finally:
        await consumer.stop()


def run_until_drained(
    process: subprocess.Popen[bytes], bootstrap: str, group: str, topic: str, per_message: int
) -> tuple[float, float]:
    """Events/s between the first and the last commit of the whole topic; peak RSS."""
    first: tuple[float, int] | None = None
    rss = 0.0
    while True:
        done, end = asyncio.run(committed(bootstrap, group, topic))
        now = time.perf_counter()
        rss = max(rss, peak_rss_mb(process.pid))
        if first is None and done > 0:
            first = (now, done)
        if done >= end > 0:
            break
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}")
        time.sleep(0.25)
    assert first is not None
    seconds = now - first[0]
    eps = (end - first[1]) * per_message / seconds if seconds > 0 else float("inf")
    return eps, rss


async def raw_consume(bootstrap: str, topic: str, expected_events: int) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=f"raw-{time.time_ns()}", max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < expected_events:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for messages in batch.values():
                for message in messages:
                    decoded = decode_message(message.value)
                    columns = decoded.columns or pa.Table.from_pylist(decoded.events)
                    seen += columns.num_rows
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started)


def stream_run(tmp: str, name: str, items: list[dict[str, Any]], per_message: int,
               columnar: bool) -> tuple[float, float]:  # fmt: skip
    """The worker over a topic of its own broker filled with `items`: (events/s, RSS)."""
    with TansuBroker() as broker:
        bootstrap = broker.bootstrap_servers
        asyncio.run(ensure_topics(bootstrap, partitions=4))
        asyncio.run(fill_topic(bootstrap, "sentinel.usage.events", items, per_message, columnar))
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SENTINEL_DATA_DIR": str(Path(tmp) / name),
            "SENTINEL_LOG_LEVEL": "WARNING",
            "SENTINEL_METRICS_PORT": "0",
        }
        process = worker(env, "worker")
        try:
            return run_until_drained(
                process, bootstrap, "sentinel-usage", "sentinel.usage.events", per_message
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--naive-events", type=int, default=100_000)
    parser.add_argument("--per-message", type=int, default=1_000)
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--query-rows", type=int, default=10_000_000)
    parser.add_argument("--ingest-events", type=int, default=400_000)
    parser.add_argument("--only", default="stream,stream_columns,raw,naive,ingest,fresh,query")
    args = parser.parse_args()
    only = set(args.only.split(","))
    results: dict[str, Any] = {}

    with tempfile.TemporaryDirectory() as tmp, TansuBroker() as broker:
        bootstrap = broker.bootstrap_servers
        asyncio.run(ensure_topics(bootstrap, partitions=4))
        items = events(args.events, args.passes)
        started = time.perf_counter()
        messages = asyncio.run(
            fill_topic(bootstrap, "sentinel.usage.events", items, args.per_message)
        )
        print(
            f"filled {len(items)} events in {messages} messages "
            f"in {time.perf_counter() - started:.1f} s"
        )

        if "raw" in only:
            results["raw_eps"] = asyncio.run(
                raw_consume(bootstrap, "sentinel.usage.events", len(items))
            )
            print(f"raw: {results['raw_eps']:.0f} events/s")

        if "stream" in only:
            eps, rss = stream_run(tmp, "stream", items, args.per_message, columnar=False)
            results["stream_eps"], results["worker_rss_mb"] = eps, rss
            print(f"stream: {eps:.0f} events/s, worker peak RSS {rss:.0f} MB")

        if "stream_columns" in only:
            eps, rss = stream_run(tmp, "columns", items, args.per_message, columnar=True)
            results["stream_columns_eps"] = eps
            print(f"stream_columns: {eps:.0f} events/s, worker peak RSS {rss:.0f} MB")

        if "naive" in only:
            naive_items = events(args.naive_events, args.passes, seed=2)
            asyncio.run(fill_topic(bootstrap, "bench.naive", naive_items, 1))
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "BENCH_DATA_DIR": str(Path(tmp) / "naive"),
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.naive_app"],
                env={**os.environ, "PYTHONPATH": str(REPO), **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                eps, _ = run_until_drained(process, bootstrap, "bench-naive", "bench.naive", 1)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
            results["naive_eps"] = eps
            print(f"naive: {eps:.0f} events/s")

        if "ingest" in only or "fresh" in only:
            results.update(http_bench.run(Path(tmp), args.ingest_events, results.get("stream_eps")))

        if "query" in only:
            results.update(query_bench.run(Path(tmp) / "query", bootstrap, args.query_rows))

    fields = ("stream_eps", "stream_columns_eps", "raw_eps", "naive_eps", "ingest_eps",
              "fresh_p95_ms", "timeline_p95_ms", "usage_p95_ms", "export_10k_ms",
              "worker_rss_mb")  # fmt: skip
    print(
        "bench: " + " ".join(f"{f}={results[f]:.0f}" if f in results else f"{f}=-" for f in fields)
    )


if __name__ == "__main__":
    main()
