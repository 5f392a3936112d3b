"""`up` takes its API port before anything else chooses a port, and says plainly when
another process has it."""

from __future__ import annotations

import socket

import pytest

from sentinel_usage.cli.main import _bind
from sentinel_usage.core.errors import ConfigurationError


def test_the_port_is_held_from_the_start() -> None:
    held = _bind("127.0.0.1", 0)
    try:
        port = held.getsockname()[1]
        with socket.socket() as other, pytest.raises(OSError, match="already in use"):
            other.bind(("127.0.0.1", port))  # no one else can take it meanwhile
    finally:
        held.close()


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}.*SENTINEL_API_PORT"
        ):
            _bind("127.0.0.1", port)
