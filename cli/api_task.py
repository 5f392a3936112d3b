"""Serving the FastAPI app from inside the Faust worker: one process, one event loop.

uvicorn's own signal handlers are left out (Faust's worker owns SIGINT/SIGTERM);
when Faust stops and cancels its tasks, the server is asked to exit and given a
few seconds to close its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator

import faust
import uvicorn
from fastapi import FastAPI


class EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def attach_api(
    app: faust.App,
    api: FastAPI,
    sock: socket.socket,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Serve `api` on `sock` (bound already: see `up`) from a task of the Faust app."""
    port = int(sock.getsockname()[1])

    async def serve_api() -> None:
        config = uvicorn.Config(api, log_config=None, access_log=False, lifespan="on")
        server = EmbeddedServer(config)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
                await asyncio.sleep(0.05)
            if server.started and on_started is not None:
                on_started(port)
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, 5)
            raise

    app.task(serve_api)
