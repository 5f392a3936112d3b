"""`make run` stops cleanly: Ctrl-C or SIGTERM within 10 s, and no broker is left behind,
not even when `up` itself is killed outright."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.stack import STOP_BUDGET_SECONDS, Stack, gone, start_stack


def broker_pid(stack: Stack) -> int:
    (pid,) = [pid for pid, args in stack.children().items() if "tansu" in args]
    return pid


@pytest.mark.parametrize(
    ("sig", "whole_group"),
    [(signal.SIGINT, True), (signal.SIGINT, False), (signal.SIGTERM, False)],
    ids=["ctrl-c-in-a-terminal", "SIGINT", "SIGTERM"],
)
def test_up_stops_within_budget_and_takes_the_broker_with_it(
    tmp_path: Path, sig: signal.Signals, whole_group: bool
) -> None:
    stack = start_stack(tmp_path / "var")
    broker = broker_pid(stack)
    took = stack.stop(sig, whole_group=whole_group)  # asserts no child outlived it
    assert took < STOP_BUDGET_SECONDS
    assert gone(broker, 0)
    print(f"{sig.name} (group={whole_group}): stopped in {took:.1f} s")


def test_a_killed_up_leaves_no_broker(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "var")
    broker = broker_pid(stack)
    stack.process.kill()
    stack.process.wait(5)
    assert gone(broker, 5), "the broker outlived a SIGKILLed parent"
