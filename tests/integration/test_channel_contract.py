"""The channel contract, table-driven over every channel in the REGISTRY, against real peers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import engine_settings
from warning.broker import BrokerAddress
from warning.channels.base import Capability, Channel, DeliveryResult, Message, Outcome
from warning.channels.registry import REGISTRY, ChannelContext
from warning.config import TwilioSettings
from warning.errors import DeliveryError
from warning.links import Links
from warning.model import Level
from warning.sandbox.speakers import SpeakerSimulator
from warning.sandbox.twilio import TwilioSandbox
from warning.sandbox.wechat import WechatSandbox, run_wechat_sandbox, sandbox_wechat, sandbox_wecom
from warning.store import Store

# A valid address per channel, and one the provider refuses for good (None: the channel has none).
ADDRESSES = {
    "sms": ("+8617400000001", "+15005550001"),
    "voice": ("+8617400000001", "+15005550001"),
    "speaker": ("spk-contract-1", None),
    "wechat": ("oContract_good_openid", "oContract_unsubscribed"),
    "wecom": ("ZhangSan", "NobodyHere"),
}


def _message(channel: str, address: str, *, expires: datetime | None = None) -> Message:
    return Message(
        key=f"A1:1:{channel}:{uuid.uuid4().hex[:8]}",
        recipient="r:1",
        address=address,
        text="【演练】台风橙色预警",
        alert_id="A1",
        version=1,
        level=Level.ORANGE,
        exercise=True,
        expires=expires or datetime.now(UTC) + timedelta(hours=1),
    )


@pytest.fixture(params=sorted(REGISTRY))
async def channel(
    request: pytest.FixtureRequest,
    store: Store,
    broker: BrokerAddress,
    twilio_sandbox: tuple[TwilioSandbox, TwilioSettings],
) -> AsyncIterator[Channel]:
    """Each registered channel, built by its factory and started against its real peer."""
    _, twilio = twilio_sandbox
    settings = engine_settings(store, twilio)
    weixin = WechatSandbox(unsubscribed=["oContract_unsubscribed"], unknown_users=["NobodyHere"])
    async with run_wechat_sandbox(weixin) as weixin_url:
        wechat = sandbox_wechat(settings.wechat, weixin_url)
        wecom = sandbox_wecom(settings.wecom, weixin_url)
        links = await Links(store.redis, store.keys, secret="", base_url="http://127.0.0.1:9").ready()
        context = ChannelContext(settings, store, broker, twilio, wechat, wecom, links)
        async for built in _started(request.param, context, broker, settings.mqtt.topic_prefix):
            yield built


async def _started(
    name: str, context: ChannelContext, broker: BrokerAddress, topic_prefix: str
) -> AsyncIterator[Channel]:
    built = REGISTRY[name](context)
    request_param = name
    simulator = None
    if request_param == "speaker":
        simulator = SpeakerSimulator(broker, [ADDRESSES["speaker"][0]], topic_prefix=topic_prefix)
        await simulator.start()
    await built.start()
    try:
        yield built
    finally:
        await built.aclose()
        if simulator is not None:
            await simulator.stop()


async def test_identity_and_limits(channel: Channel) -> None:
    """A channel's name is its registry key; it declares capabilities and positive limits."""
    assert REGISTRY[channel.name]
    assert isinstance(channel.capabilities, Capability) and Capability.TEXT in channel.capabilities
    assert channel.limits.max_in_flight > 0 and channel.limits.max_text > 0


async def test_send_returns_one_result_per_message_in_order(channel: Channel) -> None:
    """send() never raises for a delivery failure: one DeliveryResult per message, keys in order."""
    good, refused = ADDRESSES[channel.name]
    messages = [_message(channel.name, good), _message(channel.name, good)]
    if refused is not None:
        messages.append(_message(channel.name, refused))
    results = await channel.send(messages)
    assert [r.key for r in results] == [m.key for m in messages]
    assert all(isinstance(r, DeliveryResult) for r in results)
    assert [r.outcome for r in results[:2]] == [Outcome.SENT, Outcome.SENT]
    assert all(r.provider_id for r in results[:2])
    if refused is not None:
        assert results[2].outcome is Outcome.PERMANENT


async def test_nothing_is_sent_after_expiry(channel: Channel) -> None:
    """A message whose alert has expired is reported EXPIRED and never handed to the provider."""
    good, _ = ADDRESSES[channel.name]
    [result] = await channel.send(
        [_message(channel.name, good, expires=datetime.now(UTC) - timedelta(seconds=1))]
    )
    assert result.outcome is Outcome.EXPIRED and result.provider_id == ""


async def test_check_passes_when_the_peer_is_up(channel: Channel) -> None:
    """check() returns quietly once the provider or broker is reachable (connecting may take a moment)."""
    for _ in range(50):
        try:
            await channel.check()
            return
        except DeliveryError:
            await asyncio.sleep(0.1)
    await channel.check()
