"""The explicit channel registry: name → factory building the channel from its part of the config."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from warning.broker import BrokerAddress
from warning.channels.base import Channel, Message
from warning.channels.sms import SmsChannel
from warning.channels.speaker import AckHandler, SpeakerChannel
from warning.channels.voice import HOOKS_PATH, VoiceChannel
from warning.channels.wechat import WechatChannel, WecomChannel
from warning.config import Settings, TwilioSettings, WechatSettings, WecomSettings
from warning.links import CADRE, RESIDENT, Links
from warning.store import Store

_LINK_LIFETIME = 2 * 86400.0  # seconds a link of an alert without `expires` works


@dataclass(frozen=True)
class ChannelContext:
    """What channel factories may use; `twilio` is the effective account (the sandbox's when unset)."""

    settings: Settings
    store: Store
    broker: BrokerAddress
    twilio: TwilioSettings
    wechat: WechatSettings  # the effective accounts: the sandbox's when none is configured
    wecom: WecomSettings
    links: Links  # ready(): signs per-message links synchronously
    on_speaker_ack: AckHandler | None = None  # playback reports, for the delivery ledger


def page_link(links: Links) -> Callable[[Message], str]:
    """Each message's signed page: a resident's confirm page, or a contact's task list ("" when links
    stay out of the alert's messages: an Actual alert while phones cannot open our public URL)."""

    def link(message: Message) -> str:
        kind, _, subject = message.recipient.partition(":")
        purpose = {"r": RESIDENT, "c": CADRE}.get(kind)
        if purpose is None:
            return ""
        expires = message.expires.timestamp() if message.expires else time.time() + _LINK_LIFETIME
        return links.message_url(purpose, message.alert_id, subject, expires, exercise=message.exercise)

    return link


def _sms(ctx: ChannelContext) -> Channel:
    return SmsChannel(
        ctx.twilio,
        ctx.settings.sms,
        status_callback_url=f"{ctx.settings.server.base_url}/hooks/twilio/status",
    )


def _speaker(ctx: ChannelContext) -> Channel:
    return SpeakerChannel(
        ctx.broker,
        ctx.settings.speaker,
        topic_prefix=ctx.settings.mqtt.topic_prefix,
        store=ctx.store,
        on_ack=ctx.on_speaker_ack,
    )


def _voice(ctx: ChannelContext) -> Channel:
    return VoiceChannel(
        ctx.twilio,
        ctx.settings.voice,
        store=ctx.store,
        hooks_url=f"{ctx.settings.server.base_url}{HOOKS_PATH}",
    )


def _wechat(ctx: ChannelContext) -> Channel:
    return WechatChannel(ctx.wechat, store=ctx.store, link=page_link(ctx.links))


def _wecom(ctx: ChannelContext) -> Channel:
    return WecomChannel(ctx.wecom, store=ctx.store, link=page_link(ctx.links))


REGISTRY: dict[str, Callable[[ChannelContext], Channel]] = {
    "sms": _sms,
    "voice": _voice,
    "wechat": _wechat,
    "wecom": _wecom,
    "speaker": _speaker,
}
