"""The socket `up` serves the API on, with a real connection (unit tests may not connect)."""

from __future__ import annotations

import asyncio
import socket

from sentinel_usage.cli.main import _bind


async def test_connections_on_the_api_socket_send_without_delay() -> None:
    """asyncio turns Nagle's algorithm off only on IPPROTO_TCP sockets: on a socket of
    protocol 0, each answer on a kept-alive connection waited ~40 ms for a delayed ACK."""
    loop = asyncio.get_running_loop()
    nodelay: asyncio.Future[int] = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            nodelay.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    sock = _bind("127.0.0.1", 0)
    server = await loop.create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(nodelay, 5) != 0
        writer.close()
    finally:
        server.close()
