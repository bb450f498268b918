"""What every provider sandbox needs around its aiohttp app: serving it on loopback, and waiting for
the background work (callbacks, events, call lifecycles) it started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` on `host:port` (0: any free port) and yield its base URL, e.g. `http://127.0.0.1:43121`.

    Raises:
        OSError: the address cannot be bound.
    """
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def drain(tasks: set[asyncio.Task[None]], within: float) -> None:
    """Wait until every task in `tasks` (a set tasks remove themselves from when done) has finished.

    Raises:
        TimeoutError: some are still running after `within` seconds.
    """
    async with asyncio.timeout(within):
        while tasks:
            await asyncio.wait(set(tasks))
