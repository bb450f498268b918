"""The composition root: builds the aiohttp application and owns every resource's lifetime."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from warning.broker import BrokerAddress, open_broker
from warning.config import Settings
from warning.directory.importer import import_files
from warning.directory.rows import RowProblem
from warning.directory.store import Directory
from warning.i18n import t
from warning.sample.generate import sample_files
from warning.store import Store, open_store
from warning.web.health import Metrics, health_routes, metrics_middleware

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # DESIGN §5.2: bodies over 1 MiB are refused with 413

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
BROKER = web.AppKey("broker", BrokerAddress)
DIRECTORY = web.AppKey("directory", Directory)
METRICS = web.AppKey("metrics", Metrics)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_store(settings.redis, settings.data.dir) as store:
        app[STORE] = store
        app[DIRECTORY] = Directory(store)
        yield


async def _broker_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_broker(app[SETTINGS].mqtt) as address:
        app[BROKER] = address
        yield


async def load_sample_if_empty(directory: Directory, region: str) -> bool:
    """Import the bundled sample county when the directory has nothing yet; True if it did."""
    if not await directory.is_empty():
        return False
    problems: list[RowProblem] = []
    report = await import_files(directory, sample_files(), region=region, on_problem=problems.append)
    if problems or report.bad_files:
        # The bundled files are generated and tested; a problem here is a bug, not a user error.
        raise RuntimeError(f"sample county import reported problems: {problems[:3]} {report.bad_files}")
    log.info("sample county loaded", extra={"rows": sum(r.rows for r in report.tables)})
    return True


async def _sample_ctx(app: web.Application) -> AsyncIterator[None]:
    await load_sample_if_empty(app[DIRECTORY], app[SETTINGS].directory.default_region)
    yield


def build_app(settings: Settings, *, load_sample: bool = False) -> web.Application:
    """The whole service as an aiohttp app; nothing is opened until the app starts."""
    metrics = Metrics()
    app = web.Application(client_max_size=MAX_BODY, middlewares=[metrics_middleware(metrics)])
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_broker_ctx)
    if load_sample:
        app.cleanup_ctx.append(_sample_ctx)
    app.add_routes(health_routes(STORE, BROKER, DIRECTORY, METRICS))
    return app


async def serve(settings: Settings, *, host: str, port: int, load_sample: bool = False) -> None:
    """Run the service until SIGINT or SIGTERM, then close every resource in reverse order."""
    app = build_app(settings, load_sample=load_sample)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        store, broker = app[STORE], app[BROKER]
        print(
            t(
                "warning 已启动：{url}\n  Redis：{redis}{emb}\n  MQTT：{mqtt}{emb2}\n按 Ctrl-C 停止。",
                "warning is running at {url}\n  Redis: {redis}{emb}\n  MQTT: {mqtt}{emb2}\nPress Ctrl-C to stop.",
                url=f"http://{host}:{port}",
                redis=store.url,
                mqtt=broker.url,
                emb=t("（内置）", " (embedded)") if store.embedded else "",
                emb2=t("（内置）", " (embedded)") if broker.embedded else "",
            ),
            flush=True,
        )
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
