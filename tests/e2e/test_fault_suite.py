"""The fault suite (issue 11): nothing acknowledged is lost, nothing is counted twice,
nothing stays stuck, whatever happens to the embedded stack.

Under steady ingest of a generated workload (six passes, resent events, events up
to 50 minutes late), `up` is SIGKILLed with its whole process tree at random
moments three times, killed between its ClickHouse inserts and its offset commits,
has its ClickHouse writes refused for a while (its data directory made read-only,
with root's CAP_DAC_OVERRIDE dropped so that file modes apply), is fed poison
records straight on the topic, and is stopped with SIGTERM right after a burst;
after each it starts again on the same data directory. Then every acknowledged
event must be stored once, the usage counts must equal the deduplicated raw log,
and the worker must have committed every record. Bounded: about two minutes.
`SENTINEL_FAULT_SEED` replays a run (the seed is printed).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from sentinel_usage.core import topics
from sentinel_usage.core.wire import BATCH_SCHEMA
from tests.e2e.stack import Stack, committed_and_end_offsets, start_stack, wait_until_caught_up
from tests.e2e.test_durability import settle
from tests.e2e.test_resilience import deep_metadata_record
from tests.e2e.traffic import Ledger, Sender, Workload
from tests.factories import raw_event

# Root ignores file modes; without these capabilities a read-only directory is one.
WITHOUT_FILE_OVERRIDE = (
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
)


class FaultRun:
    def __init__(self, data_dir: Path, seed: int) -> None:
        self.data_dir = data_dir
        self.rng = random.Random(seed)
        self.workload = Workload(f"proj-{uuid.uuid4().hex[:6]}", passes=6, seed=seed)
        self.ledger = Ledger()
        self.faults: list[str] = []

    def life(self, **env: str) -> Stack:
        return start_stack(
            self.data_dir,
            wrapper=WITHOUT_FILE_OVERRIDE,
            SENTINEL_EXPORT_SNAPSHOT_LAG_SECONDS="0",
            **env,
        )

    def sending(self, stack: Stack) -> Sender:
        sender = Sender(stack, self.workload, self.ledger)
        sender.start()
        return sender

    def sigkill_at_random(self) -> None:
        stack = self.life()
        sender = self.sending(stack)
        time.sleep(self.rng.uniform(1.0, 4.0))
        stack.stop(signal.SIGKILL, whole_group=True)
        sender.join(10)
        self.faults.append("SIGKILL of the whole stack during ingest")

    def kill_between_insert_and_commit(self) -> None:
        stack = self.life(SENTINEL_COMMIT_INTERVAL_SECONDS="3600")
        sender = self.sending(stack)
        time.sleep(2)
        sender.stop.set()
        sender.join(10)
        deadline = time.monotonic() + 20
        while stack.metric("sentinel_sink_events_written_total") == 0:
            assert time.monotonic() < deadline, "nothing was written: the kill would prove nothing"
            time.sleep(0.2)
        committed, ends = asyncio.run(committed_and_end_offsets(stack.kafka_bootstrap))
        assert any(committed.get(p, 0) < end for p, end in ends.items()), (
            "offsets were committed: the kill would not land between insert and commit"
        )
        stack.stop(signal.SIGKILL, whole_group=True)
        self.faults.append("SIGKILL between the inserts and the offset commit")

    def clickhouse_refuses_writes(self, stack: Stack, seconds: float) -> None:
        clickhouse = self.data_dir / "clickhouse"
        subprocess.run(["chmod", "-R", "a-w", str(clickhouse)], check=True)
        try:
            deadline = time.monotonic() + 20
            while True:
                ready = httpx.get(f"{stack.base_url}/readyz", timeout=5)
                if ready.status_code == 503 and "sink" in ready.json()["checks"]:
                    break
                assert time.monotonic() < deadline, f"the fault never showed: {ready.text}"
                time.sleep(0.2)
            time.sleep(seconds)
            assert stack.metric("sentinel_sink_retries_total") > 0
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(clickhouse)], check=True)
        deadline = time.monotonic() + 30
        while httpx.get(f"{stack.base_url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "writing did not resume by itself"
            time.sleep(0.2)
        self.faults.append(f"ClickHouse writes refused for {seconds:g} s")

    def poison(self, stack: Stack) -> int:
        """Poison records of the kinds issue 11 lists, then one valid event after them
        on the same partition; return the dead letters expected."""
        pass_id = self.rng.choice(self.workload.passes)
        project = self.workload.project
        valid = raw_event(project_id=project, pass_id=pass_id)
        garbage_envelope = {"schema": BATCH_SCHEMA, "events": [1, None, {"pass_id": 5}]}
        records = [
            deep_metadata_record(project, pass_id, 300),
            b"\xff\xfe not JSON",
            orjson.dumps(garbage_envelope),
            orjson.dumps(raw_event(project_id=project, pass_id=pass_id, duration_ms="slow")),
            orjson.dumps(valid),
        ]

        async def produce() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
            await producer.start()
            try:
                for record in records:
                    await producer.send_and_wait(topics.EVENTS, record, key=pass_id.encode())
            finally:
                await producer.stop()

        asyncio.run(produce())
        self.ledger.record([valid], acked=True)
        self.faults.append("poison records on the topic (deep nesting, bytes, garbage)")
        return 1 + 1 + 3 + 1


def test_nothing_acknowledged_is_lost_and_nothing_counted_twice_under_faults(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    seed = int(os.environ.get("SENTINEL_FAULT_SEED", random.randrange(1_000_000)))
    print(f"fault suite seed {seed}")
    run = FaultRun(tmp_path / "var", seed)
    started = time.monotonic()

    for _ in range(3):
        run.sigkill_at_random()
    run.kill_between_insert_and_commit()

    stack = run.life()
    sender = run.sending(stack)
    time.sleep(1)
    run.clickhouse_refuses_writes(stack, seconds=8)
    dead_before = stack.metric_sum("sentinel_dlq_records_total")
    expected_dead = run.poison(stack)
    deadline = time.monotonic() + 30
    while stack.metric_sum("sentinel_dlq_records_total") - dead_before < expected_dead:
        assert time.monotonic() < deadline, "the poison records were not all dead-lettered"
        time.sleep(0.2)
    sender.stop.set()
    sender.join(10)
    stack.stop(signal.SIGTERM)  # an orderly stop right after the burst
    run.faults.append("SIGTERM right after a burst")

    final = run.life()
    try:
        verdict = settle(final, run.workload, run.ledger)
        wait_until_caught_up(final.kafka_bootstrap, within=30)
        readiness = httpx.get(f"{final.base_url}/readyz", timeout=5)
    finally:
        final.stop()
    took = time.monotonic() - started
    summary = (
        f"fault suite: seed={seed} events_sent={len(run.ledger.attempted)} "
        f"faults_injected={len(run.faults)} {verdict.line()} seconds={took:.0f}"
    )
    print(summary)
    print("\n".join(f"  - {fault}" for fault in run.faults))
    (artifacts_dir / "fault_suite.txt").write_text(summary + "\n")
    assert verdict.lost == 0, summary
    assert verdict.doubled == 0, summary
    assert verdict.count_errors == [], verdict.count_errors
    assert readiness.status_code == 200, readiness.text
    assert len(run.faults) >= 7
