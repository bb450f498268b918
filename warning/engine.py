"""The running broadcast engine of one process: channels, their workers, and the housekeeping loops.

`warning serve` runs it beside the web app; `warning worker` runs it alone. A Twilio section without
credentials means the bundled Twilio sandbox, started here and announced loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from warning.broadcast import Broadcaster
from warning.broker import BrokerAddress
from warning.channels.base import Channel
from warning.channels.registry import REGISTRY, ChannelContext
from warning.channels.speaker import AckHandler, delivery_of
from warning.config import (
    Settings,
    SmsSettings,
    SpeakerSettings,
    TwilioSettings,
    VoiceSettings,
    WechatSettings,
    WecomSettings,
)
from warning.errors import UsageError
from warning.evidence import Evidence
from warning.i18n import t
from warning.playback import Playback
from warning.ratelimit import RateLimiter
from warning.sandbox.twilio import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM,
    TwilioSandbox,
    run_twilio_sandbox,
)
from warning.sandbox.wechat import (
    SANDBOX_TOKEN,
    WechatSandbox,
    run_wechat_sandbox,
    sandbox_wechat,
    sandbox_wecom,
)
from warning.scheduler import Job, run_scheduler
from warning.store import Store
from warning.worker import ChannelWorker

log = logging.getLogger(__name__)


def channel_names(settings: Settings, wanted: str | None = None) -> list[str]:
    """The channels to run: `--channels` or `worker.channels`, each checked against the registry.

    Raises:
        UsageError: a name is not a registered channel.
    """
    names = [n.strip() for n in (wanted or settings.worker.channels).split(",") if n.strip()]
    escalation = settings.escalation
    for name in [*names, *escalation.task_channel_names, *(c for s in escalation.steps for c in s.channels)]:
        if name not in REGISTRY:
            raise UsageError(
                t(
                    "未知的渠道 {n}；可用：{ok}",
                    "unknown channel {n}; available: {ok}",
                    n=name,
                    ok=", ".join(REGISTRY),
                )
            )
    return names


@dataclass
class Engine:
    broadcaster: Broadcaster
    channels: dict[str, Channel]
    twilio: TwilioSettings
    sandbox: TwilioSandbox | None
    wechat_token: str = ""  # signs WeChat events to /hooks/wechat (the sandbox's when none is configured)
    wechat_sandbox: WechatSandbox | None = None


@dataclass(frozen=True)
class Weixin:
    """The effective WeChat OA and WeCom accounts, and the token that signs OA events to us."""

    wechat: WechatSettings
    wecom: WecomSettings
    event_token: str
    sandbox: WechatSandbox | None


@asynccontextmanager
async def effective_weixin(settings: Settings) -> AsyncIterator[Weixin]:
    """The configured OA/WeCom apps; a sandbox serves whichever has no credentials (announced loudly)."""
    oa_ok = bool(settings.wechat.appid and settings.wechat.secret)
    wecom_ok = bool(settings.wecom.corpid and settings.wecom.secret)
    if oa_ok and wecom_ok:
        yield Weixin(settings.wechat, settings.wecom, settings.wechat.token, None)
        return
    token = settings.wechat.token or SANDBOX_TOKEN
    sandbox = WechatSandbox(event_token=token, event_url=f"{settings.server.base_url}/hooks/wechat")
    async with run_wechat_sandbox(sandbox) as base_url:
        wechat, wecom = settings.wechat, settings.wecom
        if not oa_ok:
            log.warning("no WeChat OA credentials: pushes go to the built-in SANDBOX at %s", base_url)
            wechat = sandbox_wechat(wechat, base_url, token)
        if not wecom_ok:
            log.warning("no WeCom credentials: app messages go to the built-in SANDBOX at %s", base_url)
            wecom = sandbox_wecom(wecom, base_url)
        yield Weixin(wechat, wecom, wechat.token, sandbox)


@asynccontextmanager
async def effective_twilio(settings: Settings) -> AsyncIterator[tuple[TwilioSettings, TwilioSandbox | None]]:
    """The configured Twilio account, or a sandbox started for the duration when none is configured."""
    if settings.twilio.account_sid and settings.twilio.auth_token:
        yield settings.twilio, None
        return
    sender = settings.twilio.from_number or SANDBOX_FROM
    sandbox = TwilioSandbox(from_numbers=(sender,))
    async with run_twilio_sandbox(sandbox) as base_url:
        log.warning(
            "no Twilio credentials: SMS go to the built-in SANDBOX at %s; nobody receives a real SMS",
            base_url,
        )
        yield (
            replace(
                settings.twilio,
                account_sid=SANDBOX_ACCOUNT_SID,
                auth_token=SANDBOX_AUTH_TOKEN,
                from_number=sender,
                base_url=base_url,
            ),
            sandbox,
        )


def playback_recorder(store: Store, evidence: Evidence) -> AckHandler:
    """A loudspeaker's `played` ack marks its delivery delivered and its village heard the warning;
    `failed` marks it failed and sends the village's cadre door to door (forward only)."""

    async def record(device: str, ack: dict[str, Any]) -> None:
        if str(ack.get("status")) not in ("played", "failed"):
            return
        key = await delivery_of(store, str(ack.get("cmd_id")))
        await evidence.speaker_ack(device, ack, key)

    return record


@asynccontextmanager
async def run_engine(
    settings: Settings, store: Store, broker: BrokerAddress, *, channels: list[str]
) -> AsyncIterator[Engine]:
    """Start the channels and their workers (and housekeeping); stop them all on exit."""
    broadcaster = Broadcaster(store, settings)
    evidence = Evidence(broadcaster)
    links = await broadcaster.links.ready()
    async with effective_twilio(settings) as (twilio, sandbox), effective_weixin(settings) as weixin:
        ctx = ChannelContext(
            settings,
            store,
            broker,
            twilio,
            weixin.wechat,
            weixin.wecom,
            links,
            on_speaker_ack=playback_recorder(store, evidence),
        )
        started: dict[str, Channel] = {}
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        playback = Playback(
            broadcaster.deliveries,
            broadcaster.alerts,
            broadcaster.texts,
            republish_after=settings.speaker.republish_after,
            repeat=settings.speaker.repeat,
        )
        jobs: list[Job] = [
            ("escalation", settings.escalation.sweep_every, broadcaster.escalation.sweep),
        ]
        try:
            for name in channels:
                channel = REGISTRY[name](ctx)
                await channel.start()
                started[name] = channel
                worker = _worker(settings, store, broadcaster, channel)
                worker.on_sent.append(evidence.on_sent)
                if name == "speaker":
                    worker.on_sent.append(playback.track)
                    jobs.append(
                        (
                            "playback",
                            max(0.05, settings.speaker.republish_after / 2),
                            functools.partial(playback.republish_due, channel),
                        )
                    )
                tasks.append(asyncio.create_task(worker.run(stop), name=f"worker-{name}"))
            async with run_scheduler(store, broadcaster, settings.feeds, jobs):
                yield Engine(broadcaster, started, twilio, sandbox, weixin.event_token, weixin.sandbox)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for channel in started.values():
                with contextlib.suppress(Exception):
                    await channel.aclose()


def _worker(settings: Settings, store: Store, broadcaster: Broadcaster, channel: Channel) -> ChannelWorker:
    sections: dict[str, SmsSettings | VoiceSettings | WechatSettings | WecomSettings | SpeakerSettings] = {
        "sms": settings.sms,
        "voice": settings.voice,
        "wechat": settings.wechat,
        "wecom": settings.wecom,
    }
    section = sections.get(channel.name, settings.speaker)
    limiter = RateLimiter(
        store.redis, store.keys, channel.name, rate=section.rate_per_second, burst=section.burst
    )
    return ChannelWorker(
        channel,
        deliveries=broadcaster.deliveries,
        alerts=broadcaster.alerts,
        texts=broadcaster.texts,
        limiter=limiter,
        settings=settings.worker,
        repeat=settings.speaker.repeat,
    )
