"""The composition root: builds the aiohttp application and owns every resource's lifetime."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from warning.broadcast import Broadcaster
from warning.broker import open_broker
from warning.config import Settings
from warning.directory.importer import import_files
from warning.directory.rows import RowProblem
from warning.directory.store import Directory
from warning.engine import channel_names, run_engine
from warning.errors import UsageError
from warning.evidence import Evidence
from warning.i18n import t
from warning.public_url import public_url_problem
from warning.readmodel import ReadModel
from warning.sample.generate import sample_files
from warning.store import open_store
from warning.users import Users
from warning.views import ReadGate
from warning.web.api import api_routes, auth_middleware
from warning.web.approvals import approval_routes
from warning.web.audit_pages import audit_routes
from warning.web.cadre import cadre_routes
from warning.web.console import console_routes
from warning.web.console_live import live_routes
from warning.web.deadletters import deadletter_routes
from warning.web.directory_api import directory_routes
from warning.web.health import ChannelChecks, Metrics, health_routes, metrics_middleware
from warning.web.hooks import hook_routes

# The app's resources, by key; defined in warning.web.keys so route modules can name them too.
from warning.web.keys import (
    BACKGROUND,
    BROADCASTER,
    BROKER,
    CHANNEL_CHECKS,
    CHANNELS,
    DELIVERIES,
    DIRECTORY,
    ENGINE,
    EVIDENCE,
    METRICS,
    READ_MODEL,
    READER_USERS,
    RUNNING_CHANNELS,
    SETTINGS,
    STORE,
    THROTTLE,
    TWILIO_TOKEN,
    USERS,
    VOICE_CALLBACKS,
    WECHAT_TOKEN,
)
from warning.web.login import login_routes
from warning.web.openapi import openapi_routes
from warning.web.pages import static_routes
from warning.web.public_page import public_routes
from warning.web.throttle import Throttle, run_sweeper
from warning.web.voice_hooks import VoiceCallbacks, voice_routes

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # DESIGN §5.2: bodies over 1 MiB are refused with 413


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_store(settings.redis, settings.data.dir) as store:
        app[STORE] = store
        app[DIRECTORY] = Directory(store)
        app[BROADCASTER] = Broadcaster(store, settings)
        app[DELIVERIES] = app[BROADCASTER].deliveries
        app[EVIDENCE] = Evidence(app[BROADCASTER])
        app[VOICE_CALLBACKS] = voice_callbacks(app[EVIDENCE])
        app[USERS] = Users(store.redis, store.keys)
        readers = dataclasses.replace(store, redis=store.readers)
        app[READ_MODEL] = ReadModel(readers, settings)
        app[READER_USERS] = Users(readers.redis, readers.keys)
        yield


async def _throttle_ctx(app: web.Application) -> AsyncIterator[None]:
    """The link pages' per-client throttle and the sweeper of its per-minute audit summaries; on the
    way out, /readyz's check refreshes still running are cancelled too."""
    server, store, metrics = app[SETTINGS].server, app[STORE], app[METRICS]
    app[THROTTLE] = Throttle(
        store.redis,
        store.keys,
        rate_per_minute=server.link_rate_per_minute,
        burst=server.link_burst,
        refusals_per_minute=server.link_refusals_per_minute,
        on_refused=lambda reason: metrics.link_refusals.labels(reason).inc(),
    )
    sweeper = asyncio.create_task(run_sweeper(app[THROTTLE], app[BROADCASTER].alerts.audit))
    yield
    sweeper.cancel()
    await asyncio.gather(sweeper, return_exceptions=True)
    await app[CHANNEL_CHECKS].aclose()


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Workers run in-process; their channels (and the Twilio sandbox, if no account) live as long as the app."""
    async with run_engine(app[SETTINGS], app[STORE], app[BROKER], channels=app[CHANNELS]) as engine:
        app[ENGINE] = engine
        app[RUNNING_CHANNELS] = engine.channels
        app[TWILIO_TOKEN] = engine.twilio.auth_token
        app[WECHAT_TOKEN] = engine.wechat_token
        yield
    tasks = app[BACKGROUND]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def voice_callbacks(evidence: Evidence) -> VoiceCallbacks:
    """Keypresses and call outcomes go to the ledgers."""

    async def on_status(key: str, status: str, attempt: int, params: Mapping[str, str]) -> None:
        await evidence.voice_status(key, status, attempt)

    return VoiceCallbacks(on_digits=evidence.voice_digits, on_status=on_status)


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


def build_app(
    settings: Settings, *, load_sample: bool = False, channels: list[str] | None = None
) -> web.Application:
    """The whole service as an aiohttp app; nothing is opened until the app starts.

    `channels` are the channels whose workers run in this process (default `worker.channels`).
    """
    metrics = Metrics()
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[
            metrics_middleware(metrics),
            auth_middleware(
                USERS,
                READER_USERS,
                ReadGate(settings.server.read_rate, timeout=settings.redis.read_pool_timeout),
                SETTINGS,
            ),
        ],
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[CHANNEL_CHECKS] = ChannelChecks(settings.server.readyz_check_ttl)
    app[BACKGROUND] = set()
    app[CHANNELS] = channel_names(settings) if channels is None else channels
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_throttle_ctx)
    app.cleanup_ctx.append(_broker_ctx)
    if load_sample:
        app.cleanup_ctx.append(_sample_ctx)
    app.cleanup_ctx.append(_engine_ctx)
    app.add_routes(health_routes(STORE, BROKER, DIRECTORY, METRICS, RUNNING_CHANNELS))
    app.add_routes(api_routes(BROADCASTER, BACKGROUND, READ_MODEL))
    app.add_routes(deadletter_routes(BROADCASTER))
    app.add_routes(
        hook_routes(settings.server.base_url, TWILIO_TOKEN, EVIDENCE, STORE, settings.wechat, WECHAT_TOKEN)
    )
    app.add_routes(cadre_routes(EVIDENCE, THROTTLE))
    app.add_routes(
        voice_routes(settings.server.base_url, TWILIO_TOKEN, STORE, VOICE_CALLBACKS, settings.voice)
    )
    app.add_routes(openapi_routes(settings.server.base_url))
    app.add_routes(static_routes())
    app.add_routes(login_routes())
    app.add_routes(audit_routes())
    app.add_routes(approval_routes())
    app.add_routes(directory_routes())
    app.add_routes(console_routes())
    app.add_routes(public_routes())
    app.add_routes(live_routes())
    return app


def listen(host: str, port: int) -> socket.socket:
    """Bind the service's address *before* anything else starts: the sandboxes and clients that start
    with the app take ephemeral ports, and one must never take ours (nor may we start half a service
    to find the port taken).

    Raises:
        UsageError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            t(
                "无法监听 {h}:{p}（{e}）：端口被占用时请换一个，如 --port 8081",
                "cannot listen on {h}:{p} ({e}): if the port is taken, choose another, e.g. --port 8081",
                h=host,
                p=port,
                e=exc.strerror or exc,
            )
        ) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings, *, host: str, port: int, load_sample: bool = False) -> None:
    """Run the service until SIGINT or SIGTERM, then close every resource in reverse order.

    Raises:
        UsageError: the address cannot be bound.
    """
    sock = listen(host, port)
    app = build_app(settings, load_sample=load_sample)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        store, broker = app[STORE], app[BROKER]
        engine = app[ENGINE]
        print(
            t(
                "warning 已启动：{url}\n  Redis：{redis}{emb}\n  MQTT：{mqtt}{emb2}\n  发送渠道：{ch}",
                "warning is running at {url}\n  Redis: {redis}{emb}\n  MQTT: {mqtt}{emb2}\n  channels: {ch}",
                url=f"http://{host}:{port}",
                redis=store.url,
                mqtt=broker.url,
                emb=t("（内置）", " (embedded)") if store.embedded else "",
                emb2=t("（内置）", " (embedded)") if broker.embedded else "",
                ch=", ".join(engine.channels) or "-",
            ),
            flush=True,
        )
        if engine.sandbox is not None:
            print(
                t(
                    "  注意：未配置 Twilio 账号，短信发往内置沙箱，不会有人真正收到。",
                    "  NOTE: no Twilio account configured: SMS go to the built-in sandbox; nobody receives them.",
                ),
                flush=True,
            )
        if engine.wechat_sandbox is not None:
            print(
                t(
                    "  注意：未配置微信公众号/企业微信，推送发往内置沙箱，不会有人真正收到。",
                    "  NOTE: no WeChat / WeCom account configured: pushes go to the built-in sandbox.",
                ),
                flush=True,
            )
        if (problem := public_url_problem(settings.server)) is not None:
            print("  " + problem, flush=True)
        print(
            t("  值班控制台：{url}/", "  operator console: {url}/", url=f"http://{host}:{port}"), flush=True
        )
        if not any(account.has_password for account in await app[USERS].accounts()):
            print(
                t(
                    "  还没有能登录控制台的账号：warning users add 姓名 --role admin --password-stdin（再输入密码回车），"
                    "角色另有 viewer、operator、approver；该命令同时打印 API 令牌。",
                    "  No one can sign in to the console yet: `warning users add NAME --role admin "
                    "--password-stdin` (then type the password and Enter); other roles: viewer, operator, "
                    "approver. It also prints an API token.",
                ),
                flush=True,
            )
        print(t("按 Ctrl-C 停止。", "Press Ctrl-C to stop."), flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
