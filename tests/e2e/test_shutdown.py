"""`make run` stops cleanly: Ctrl-C or SIGTERM within 10 s, and no broker is left behind,
not even when `up` itself is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.stack import STOP_BUDGET_SECONDS, start_stack


def children(pid: int) -> dict[int, str]:
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in out.splitlines()}


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_stops_within_budget_and_takes_the_broker_with_it(
    tmp_path: Path, sig: signal.Signals
) -> None:
    stack = start_stack(tmp_path / "var")
    (broker_pid,) = [pid for pid, args in children(stack.process.pid).items() if "tansu" in args]
    took = stack.stop(sig)  # also asserts that nothing of the process group is left
    assert took < STOP_BUDGET_SECONDS
    assert gone(broker_pid, 1)
    print(f"{sig.name}: stopped in {took:.1f} s")


def test_a_killed_up_leaves_no_broker(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "var")
    (broker_pid,) = [pid for pid, args in children(stack.process.pid).items() if "tansu" in args]
    stack.process.kill()
    stack.process.wait(5)
    assert gone(broker_pid, 5), "the broker outlived a SIGKILLed parent"
