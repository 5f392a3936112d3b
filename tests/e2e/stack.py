"""Starting and stopping a real `sentinel-usage up` for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from sentinel_usage.api.auth import issue_token
from sentinel_usage.cli.tansu import free_port
from sentinel_usage.core import topics
from sentinel_usage.stream.app import APP_ID

STOP_BUDGET_SECONDS = 10.0


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    base_url: str
    kafka_bootstrap: str
    data_dir: Path
    log_path: Path

    def token(self, projects: list[str], scopes: list[str]) -> str:
        secret = (self.data_dir / "jwt_secret").read_text().strip()
        return issue_token(secret, projects, scopes)

    def client(
        self, projects: list[str] | None = None, scopes: list[str] | None = None
    ) -> httpx.Client:
        headers = {}
        if projects is not None:
            token = self.token(projects, scopes or ["usage:read", "usage:export", "events:write"])
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def create_pass(self, project: str, agent_name: str, **fields: object) -> dict[str, Any]:
        """A pass created through the registry API: its view, client id and secret."""
        body = {"agent_name": agent_name, "agent_type": "test agent", **fields}
        with self.client([project], ["passes:write"]) as admin:
            created = admin.post(f"/v1/projects/{project}/passes", json=body)
        assert created.status_code == 201, created.text
        return dict(created.json())

    @property
    def metrics_url(self) -> str:
        text = self.log_path.read_text(errors="replace")
        return re.findall(r"^\s+metrics\s+(\S+)$", text, re.MULTILINE)[-1]

    def metric(self, name: str) -> float:
        text = httpx.get(self.metrics_url, timeout=10).text
        match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def metric_sum(self, family: str) -> float:
        """The sum of every sample of a metric family, whatever its labels."""
        text = httpx.get(self.metrics_url, timeout=10).text
        pattern = rf"^{re.escape(family)}(?:{{[^}}]*}})? ([0-9.e+]+)$"
        return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))

    def children(self) -> dict[int, str]:
        out = subprocess.run(
            ["ps", "-o", "pid=,args=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in out.splitlines()}

    def stop(self, sig: int = signal.SIGTERM, whole_group: bool = False) -> float:
        """Stop the stack; return the seconds it took. Fails if anything outlives it.

        `whole_group` sends the signal to the process group, as a terminal's Ctrl-C does.
        """
        started = time.monotonic()
        pgid = os.getpgid(self.process.pid)
        children = list(self.children())
        if whole_group:
            os.killpg(pgid, sig)
        else:
            self.process.send_signal(sig)
        try:
            self.process.wait(STOP_BUDGET_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            raise AssertionError(f"`up` did not stop within {STOP_BUDGET_SECONDS} s") from None
        took = time.monotonic() - started
        survivors = [pid for pid in children if not gone(pid, within=3)]
        if survivors:
            for pid in survivors:
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"processes outlived `up`: {survivors}")
        return took


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


async def committed_and_end_offsets(bootstrap: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offsets, end offsets) of the events topic for the worker's group."""
    # aiokafka's admin OffsetFetch cannot decode Tansu's answer; a consumer of the
    # group that never subscribes reads the committed offsets without joining.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=APP_ID, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topics.EVENTS) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topics.EVENTS) or set()
        tps = [TopicPartition(topics.EVENTS, p) for p in partitions]
        ends = {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
        done = {}
        for tp in tps:
            offset = await consumer.committed(tp)
            if offset is not None and offset >= 0:
                done[tp.partition] = offset
        return done, ends
    finally:
        await consumer.stop()


def wait_until_caught_up(bootstrap: str, within: float = 60) -> None:
    """Until the worker's group has committed every record of the events topic."""
    deadline = time.monotonic() + within
    while True:
        committed, ends = asyncio.run(committed_and_end_offsets(bootstrap))
        if all(committed.get(p, 0) >= end for p, end in ends.items()):
            return
        assert time.monotonic() < deadline, f"not caught up: {committed} vs {ends}"
        time.sleep(0.3)


def start_stack(data_dir: Path, wrapper: Sequence[str] = (), **env: str) -> Stack:
    """`sentinel-usage up` on `data_dir`, ready (`/readyz` 200); `wrapper` is a command
    prefix (e.g. setpriv) and `env` extra environment."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / f"up-{port}.log"
    environment = {
        **os.environ,
        "SENTINEL_DATA_DIR": str(data_dir),
        "SENTINEL_API_PORT": str(port),
        "SENTINEL_SINK_BATCH_SECONDS": "0.05",
        "SENTINEL_METRICS_PORT": "0",  # stacks run side by side
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "sentinel_usage.cli.main", "up"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"`up` exited with {process.returncode}:\n{log_path.read_text()}")
        text = log_path.read_text(errors="replace")
        kafka = re.search(r"^\s+Kafka\s+(\S+)$", text, re.MULTILINE)
        if kafka:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200:
                    return Stack(process, base_url, kafka.group(1), data_dir, log_path)
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    os.killpg(os.getpgid(process.pid), signal.SIGKILL)
    raise AssertionError(f"`up` not ready within 60 s:\n{log_path.read_text()}")
