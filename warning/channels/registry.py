"""The explicit channel registry: name → factory building the channel from its part of the config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from warning.broker import BrokerAddress
from warning.channels.base import Channel
from warning.channels.sms import SmsChannel
from warning.channels.speaker import AckHandler, SpeakerChannel
from warning.config import Settings, TwilioSettings
from warning.store import Store


@dataclass(frozen=True)
class ChannelContext:
    """What channel factories may use; `twilio` is the effective account (the sandbox's when unset)."""

    settings: Settings
    store: Store
    broker: BrokerAddress
    twilio: TwilioSettings
    on_speaker_ack: AckHandler | None = None  # playback reports, for the delivery ledger


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


REGISTRY: dict[str, Callable[[ChannelContext], Channel]] = {
    "sms": _sms,
    "speaker": _speaker,
}
