"""Unit tests cannot touch a real service by accident: opening a network
connection fails loudly. Tests that need a broker or ClickHouse live in
tests/integration and tests/e2e."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest


class NetworkBlockedError(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(self: socket.socket, address: Any, *args: Any) -> None:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address, *args)
        raise NetworkBlockedError(f"unit tests may not connect to {address!r}")

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return
