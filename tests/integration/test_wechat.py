"""The WeChat (OA) and WeCom channels against the WeChat sandbox over loopback HTTP, with the token in real Redis."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Servers, redis_settings
from warning.channels.base import Message, Outcome
from warning.channels.wechat import WechatChannel, WecomChannel
from warning.channels.wechat_token import TokenCache
from warning.config import WechatSettings, WecomSettings
from warning.errors import ConfigError, TransientDeliveryError
from warning.model import Level
from warning.sandbox.wechat import (
    SANDBOX_AGENTID,
    SANDBOX_APPID,
    SANDBOX_CORPID,
    SANDBOX_CORPSECRET,
    SANDBOX_SECRET,
    SANDBOX_TEMPLATE_ID,
    SANDBOX_TOKEN,
    WechatSandbox,
    run_wechat_sandbox,
)
from warning.store import Store, open_store
from warning.web.signatures import wechat_signature, wechat_valid

TEXT = "【演练】台风橙色预警。受台风影响，预计今天夜间到明天白天本县有大暴雨，请立即转移到村安置点，远离河道和山边。"
LINK = "https://warning.example/r/token123"


def openid(n: int) -> str:
    """An openid of the real shape: "o" and 27 URL-safe characters."""
    return f"o6_bmjrPTlm6_2sgVt7hMZO{n:05d}"


def message(n: int = 1, *, to: str = "", text: str = TEXT, channel: str = "wechat") -> Message:
    return Message(
        key=f"a1:1:{channel}:r:{n}",
        recipient=f"r:{n}",
        address=to or openid(n),
        text=text,
        alert_id="a1",
        version=1,
        level=Level.ORANGE,
        exercise=True,
        expires=None,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sandbox() -> WechatSandbox:
    return WechatSandbox(seed=5, unsubscribed={openid(43004)}, unknown_users={"NoSuchUser"})


@pytest.fixture
async def sandbox_url(sandbox: WechatSandbox) -> AsyncIterator[str]:
    async with run_wechat_sandbox(sandbox) as url:
        yield url


C = TypeVar("C", WechatChannel, WecomChannel)


@dataclass
class Factory:
    """Builds started channels on the sandbox; `other_process()` is a second Redis connection, as another host has."""

    url: str
    store: Store
    servers: Servers
    tmp_path: Path
    stack: AsyncExitStack

    async def oa(self, *, store: Store | None = None, link: bool = True, **settings: Any) -> WechatChannel:
        defaults = {"appid": SANDBOX_APPID, "secret": SANDBOX_SECRET, "template_id": SANDBOX_TEMPLATE_ID}
        channel = WechatChannel(
            WechatSettings(**{"base_url": self.url, **defaults, **settings}),
            store=store or self.store,
            link=(lambda m: LINK) if link else None,
        )
        return await self._started(channel)

    async def wecom(self, *, store: Store | None = None, link: bool = True, **settings: Any) -> WecomChannel:
        defaults = {"corpid": SANDBOX_CORPID, "secret": SANDBOX_CORPSECRET, "agentid": SANDBOX_AGENTID}
        channel = WecomChannel(
            WecomSettings(**{"base_url": self.url, **defaults, **settings}),
            store=store or self.store,
            link=(lambda m: LINK) if link else None,
        )
        return await self._started(channel)

    async def _started(self, channel: C) -> C:
        await channel.start()
        self.stack.push_async_callback(channel.aclose)
        return channel

    async def other_process(self) -> Store:
        """The same Redis and namespace through a connection of its own."""
        settings = redis_settings(self.servers, self.store.keys.namespace)
        return await self.stack.enter_async_context(open_store(settings, self.tmp_path))


@pytest.fixture
async def make(sandbox_url: str, store: Store, servers: Servers, tmp_path: Path) -> AsyncIterator[Factory]:
    async with AsyncExitStack() as stack:
        yield Factory(sandbox_url, store, servers, tmp_path, stack)


# ---- the OA template message ----


async def test_template_message_carries_the_fields_and_link(make: Factory, sandbox: WechatSandbox) -> None:
    """A sent message reaches the sandbox with the template, the four fields within limits, the link and a dedup id."""
    channel = await make.oa()
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.SENT, result.detail
    [sent] = sandbox.sent
    assert (result.provider_id, sent.touser, sent.template_id, sent.url) == (
        sent.msgid,
        openid(1),
        SANDBOX_TEMPLATE_ID,
        LINK,
    )
    values = {key: value["value"] for key, value in sent.data.items()}
    assert values["thing1"] == "【演练】台风橙色预警"
    assert values["phrase2"] == "橙色"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", values["time3"])
    assert values["thing4"] == "受台风影响，预计今天夜间到明天白天本县…"
    assert len(sent.client_msg_id) == 32


async def test_template_message_without_link_omits_url(make: Factory, sandbox: WechatSandbox) -> None:
    """Without a link the request has no `url` at all (an empty one would open a blank page)."""
    channel = await make.oa(link=False)
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.SENT
    assert sandbox.sent[0].url == ""


async def test_same_delivery_twice_is_sent_once(make: Factory, sandbox: WechatSandbox) -> None:
    """Delivering one key twice carries the same client_msg_id, so the platform sends it once."""
    channel = await make.oa()
    first = await channel.deliver(message())
    second = await channel.deliver(message())
    assert first == second
    assert len(sandbox.sent) == 1


async def test_token_is_fetched_once_for_every_process(make: Factory, sandbox: WechatSandbox) -> None:
    """Two processes (own Redis connections) sending concurrently share one token: one fetch in all."""
    here = await make.oa()
    there = await make.oa(store=await make.other_process())
    results = await asyncio.gather(
        here.send([message(n) for n in range(10)]), there.send([message(n) for n in range(10, 20)])
    )
    assert all(r.outcome is Outcome.SENT for batch in results for r in batch)
    assert sandbox.token_fetches == 1


@pytest.mark.parametrize("reject", ["invalidate_tokens", "expire_tokens"])
async def test_rejected_token_is_refreshed_once_and_the_send_succeeds(
    make: Factory, sandbox: WechatSandbox, reject: str
) -> None:
    """After 40001 (invalidated) or 42001 (expired) the token is fetched again once and the message still goes."""
    channel = await make.oa()
    await channel.check()
    getattr(sandbox, reject)()
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.SENT, result.detail
    assert sandbox.token_fetches == 2
    [again] = await channel.send([message(2)])  # the new token is cached: no more fetches
    assert again.outcome is Outcome.SENT
    assert sandbox.token_fetches == 2


async def test_many_rejections_at_once_refresh_once(make: Factory, sandbox: WechatSandbox) -> None:
    """Twenty sends in two processes all see the old token rejected, and exactly one of them fetches anew."""
    here = await make.oa()
    there = await make.oa(store=await make.other_process())
    await here.check()
    sandbox.invalidate_tokens()
    results = await asyncio.gather(
        here.send([message(n) for n in range(10)]), there.send([message(n) for n in range(10, 20)])
    )
    assert all(r.outcome is Outcome.SENT for batch in results for r in batch)
    assert sandbox.token_fetches == 2


async def test_token_rejected_twice_is_transient(make: Factory, sandbox: WechatSandbox) -> None:
    """A token rejected again right after the refresh is retried once only, then reported transient."""
    channel = await make.oa()
    await channel.check()
    sandbox.token_ttl = 0  # every new token is born expired: 42001 again after the refresh
    sandbox.expire_tokens()
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.TRANSIENT
    assert "42001" in result.detail
    assert sandbox.sent == []


async def test_quota_exceeded_is_transient_with_retry_after(make: Factory, sandbox: WechatSandbox) -> None:
    """Past the per-minute quota the platform answers 45009: transient, retry after a minute."""
    sandbox.per_minute = 2
    channel = await make.oa(max_in_flight=1)
    results = await channel.send([message(n) for n in range(3)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT, Outcome.TRANSIENT]
    assert results[2].retry_after == 60.0 and "45009" in results[2].detail
    assert len(sandbox.sent) == 2


async def test_unsubscribed_resident_is_permanent(make: Factory, sandbox: WechatSandbox) -> None:
    """A resident who does not follow the OA (43004) fails permanently and nothing is sent."""
    channel = await make.oa()
    [result] = await channel.send([message(43004)])
    assert result.outcome is Outcome.PERMANENT and "43004" in result.detail
    assert sandbox.sent == []


async def test_system_busy_is_transient(make: Factory, sandbox: WechatSandbox) -> None:
    """errcode -1 (system busy) is transient, without a provider-given wait."""
    channel = await make.oa()
    await channel.check()
    sandbox.error_rate = 1.0
    [result] = await channel.send([message()])
    assert (result.outcome, result.retry_after) == (Outcome.TRANSIENT, None)
    assert "-1" in result.detail


async def test_unknown_template_is_permanent_and_names_the_setting(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """A template id the OA does not know (40037) fails permanently and the error log names wechat.template_id."""
    channel = await make.oa(template_id="not-a-template")
    with caplog.at_level(logging.ERROR, logger="warning.channels.wechat"):
        [result] = await channel.send([message()])
    assert result.outcome is Outcome.PERMANENT and "40037" in result.detail
    assert "wechat.template_id" in caplog.text


async def test_wrong_secret_pauses_fetching_for_everyone(
    make: Factory, sandbox: WechatSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused secret (40125) is transient with retry_after 60, logged without the secret, and fetched once for many sends."""
    channel = await make.oa(secret="0" * 32)
    with caplog.at_level(logging.ERROR, logger="warning.channels.wechat"):
        results = await channel.send([message(n) for n in range(5)])
    assert {r.outcome for r in results} == {Outcome.TRANSIENT}
    assert all(r.retry_after is not None and 55 <= r.retry_after <= 60 for r in results)
    assert sandbox.token_fetches == 1
    assert "wechat.secret" in caplog.text and "0" * 32 not in caplog.text
    with pytest.raises(TransientDeliveryError):
        await channel.check()


async def test_access_token_never_reaches_the_log(
    make: Factory, sandbox: WechatSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever happens on the wire, neither the secret nor the access token is logged."""
    channel = await make.oa()
    with caplog.at_level(logging.DEBUG):
        await channel.send([message(43004), message(2)])
        sandbox.invalidate_tokens()
        await channel.send([message(3)])
    assert SANDBOX_SECRET not in caplog.text
    assert not re.search(r"[0-9a-f]{96}", caplog.text)  # the sandbox's tokens are 96 hex digits


async def test_hung_platform_is_ambiguous(make: Factory, sandbox: WechatSandbox) -> None:
    """A request written but not answered within the timeout is ambiguous — and the platform did send it."""
    channel = await make.oa(timeout=0.3)
    await channel.check()
    sandbox.latency = 1.0
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.AMBIGUOUS
    assert len(sandbox.sent) == 1  # why an ambiguous send is never blindly resent


async def test_nothing_listening_is_transient(make: Factory) -> None:
    """When nothing listens at base_url the request never left: transient, and `check()` raises."""
    channel = await make.oa(base_url=f"http://127.0.0.1:{free_port()}")
    [result] = await channel.send([message()])
    assert result.outcome is Outcome.TRANSIENT
    with pytest.raises(TransientDeliveryError):
        await channel.check()


async def test_missing_credentials_refuse_to_start(store: Store) -> None:
    """A channel without appid, secret or template id refuses to start, naming what is missing."""
    channel = WechatChannel(WechatSettings(appid=SANDBOX_APPID), store=store)
    with pytest.raises(ConfigError, match=r"wechat\.secret.*wechat\.template_id"):
        await channel.start()


# ---- the shared token in Redis ----


class CountingFetch:
    """A token endpoint stand-in: T1, T2, … after `delay` seconds, or the error it is told to raise."""

    def __init__(self, *, expires_in: int = 7200, delay: float = 0.0) -> None:
        self.calls = 0
        self.expires_in, self.delay = expires_in, delay
        self.error: TransientDeliveryError | None = None

    async def __call__(self) -> tuple[str, int]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return f"T{self.calls}", self.expires_in


async def test_late_rejection_of_an_old_token_keeps_the_new_one(store: Store) -> None:
    """A process reporting an already replaced token gets the newer one; nobody fetches a third."""
    fetch = CountingFetch()
    tokens = TokenCache(store.redis, store.keys, name="t", fetch=fetch)
    assert await tokens.get() == "T1"
    assert await tokens.refresh("T1") == "T2"
    assert await tokens.refresh("T1") == "T2"  # its request with T1 was slower than ours
    assert await tokens.get() == "T2"
    assert fetch.calls == 2


async def test_concurrent_first_use_fetches_once(store: Store) -> None:
    """Twenty tasks needing a token while a slow fetch runs all get that one token."""
    fetch = CountingFetch(delay=0.2)
    tokens = TokenCache(store.redis, store.keys, name="t", fetch=fetch)
    assert set(await asyncio.gather(*(tokens.get() for _ in range(20)))) == {"T1"}
    assert fetch.calls == 1


@pytest.mark.parametrize(("expires_in", "ttl"), [(7200, 6900), (60, 30)])
async def test_token_is_cached_short_of_its_expiry(store: Store, expires_in: int, ttl: int) -> None:
    """The cached token expires 5 minutes before the platform's expiry (half-way for short-lived tokens)."""
    tokens = TokenCache(store.redis, store.keys, name="t", fetch=CountingFetch(expires_in=expires_in))
    await tokens.get()
    remaining = await store.redis.pttl(store.keys.key("wechat", "token", "t"))
    assert ttl * 1000 - 1000 < remaining <= ttl * 1000


async def test_lock_of_a_dead_fetcher_expires(store: Store) -> None:
    """A lock left by a process that died mid-fetch delays the others only until it expires."""
    fetch = CountingFetch()
    tokens = TokenCache(store.redis, store.keys, name="t", fetch=fetch, lock_ttl=0.3)
    await store.redis.set(store.keys.key("wechat", "token", "t", "lock"), "dead-process", px=300)
    started = asyncio.get_running_loop().time()
    assert await tokens.get() == "T1"
    assert asyncio.get_running_loop().time() - started >= 0.25
    assert fetch.calls == 1


async def test_failed_fetch_backs_everyone_off(store: Store) -> None:
    """After a failed fetch the others fail fast with the remaining backoff instead of fetching again."""
    fetch = CountingFetch()
    fetch.error = TransientDeliveryError("refused", retry_after=2.0)
    tokens = TokenCache(store.redis, store.keys, name="t", fetch=fetch)
    with pytest.raises(TransientDeliveryError) as first:
        await tokens.get()
    with pytest.raises(TransientDeliveryError) as second:
        await tokens.get()
    assert first.value.retry_after == 2.0
    assert second.value.retry_after is not None and 1.5 < second.value.retry_after <= 2.0
    assert str(second.value) == "refused" and fetch.calls == 1


# ---- result events ----


@dataclass
class EventReceiver:
    """A /hooks/wechat stand-in that records each POST and answers `status`."""

    status: int = 200
    received: list[tuple[dict[str, str], str]] = field(default_factory=list)

    async def hook(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.query), await request.text()))
        return web.Response(status=self.status, text="success")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[EventReceiver, str]]:
    events = EventReceiver()
    app = web.Application()
    app.router.add_post("/hooks/wechat", events.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield events, f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/wechat"
    finally:
        await runner.cleanup()


def xml_field(xml: str, name: str) -> str:
    found = re.search(rf"<{name}>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</{name}>", xml)
    assert found, f"{name} missing in {xml}"
    return found.group(1)


async def test_result_event_is_signed_and_names_the_msgid(
    make: Factory, sandbox: WechatSandbox, receiver: tuple[EventReceiver, str]
) -> None:
    """Each accepted message is followed by a TEMPLATESENDJOBFINISH event signed so `wechat_signature` verifies it."""
    events, url = receiver
    sandbox.event_url = url
    sandbox.blocked = {openid(2)}
    channel = await make.oa()
    results = await channel.send([message(1), message(2)])
    await sandbox.drain()
    assert len(events.received) == 2
    statuses = {}
    for query, xml in events.received:
        expected = wechat_signature(SANDBOX_TOKEN, query["timestamp"], query["nonce"])
        assert query["signature"] == expected
        assert wechat_valid(
            SANDBOX_TOKEN,
            query["timestamp"],
            query["nonce"],
            query["signature"],
            now=float(query["timestamp"]),
            max_skew=5,
        )
        assert not wechat_valid(
            "another-token",
            query["timestamp"],
            query["nonce"],
            query["signature"],
            now=float(query["timestamp"]),
            max_skew=5,
        )
        assert (xml_field(xml, "MsgType"), xml_field(xml, "Event")) == ("event", "TEMPLATESENDJOBFINISH")
        assert xml_field(xml, "FromUserName") == query["openid"]
        statuses[xml_field(xml, "MsgID")] = xml_field(xml, "Status")
    assert statuses == {results[0].provider_id: "success", results[1].provider_id: "failed:user block"}


async def test_refused_event_is_not_retried(
    make: Factory, sandbox: WechatSandbox, receiver: tuple[EventReceiver, str]
) -> None:
    """An event the receiver answers 403 (bad signature) is dropped at once; a 503 is retried."""
    events, url = receiver
    sandbox.event_url, sandbox.event_backoff = url, 0.01
    channel = await make.oa()
    events.status = 403
    await channel.send([message(1)])
    await sandbox.drain()
    assert (len(events.received), sandbox.events_dropped) == (1, 1)
    events.status = 503
    await channel.send([message(2)])
    await sandbox.drain()
    assert (len(events.received), sandbox.events_dropped) == (1 + sandbox.event_attempts, 2)


# ---- WeCom ----


async def test_wecom_textcard_with_link(make: Factory, sandbox: WechatSandbox) -> None:
    """With a link a cadre gets a textcard: title and description within WeCom's byte limits, button 详情."""
    channel = await make.wecom()
    [result] = await channel.send([message(to="ZhangWei", text=TEXT * 5, channel="wecom")])
    assert result.outcome is Outcome.SENT, result.detail
    [sent] = sandbox.sent
    assert (sent.touser, sent.msgtype, sent.msgid, sent.truncated) == (
        "ZhangWei",
        "textcard",
        result.provider_id,
        False,
    )
    card = sent.textcard
    assert (card["title"], card["url"], card["btntxt"]) == ("【演练】台风橙色预警", LINK, "详情")
    assert len(card["description"].encode()) <= 512 and card["description"].endswith("…")


async def test_wecom_text_without_link(make: Factory, sandbox: WechatSandbox) -> None:
    """Without a link a cadre gets a text message with the whole text, cut to 2048 bytes."""
    channel = await make.wecom(link=False)
    [result] = await channel.send([message(to="ZhangWei", text="预" * 1000, channel="wecom")])
    assert result.outcome is Outcome.SENT
    [sent] = sandbox.sent
    assert sent.msgtype == "text" and not sent.truncated
    assert len(sent.content.encode()) <= 2048 and sent.content == "预" * 681 + "…"


async def test_wecom_unknown_user_is_permanent(make: Factory, sandbox: WechatSandbox) -> None:
    """A userid WeCom lists in `invaliduser` (case aside) fails permanently."""
    channel = await make.wecom()
    [result] = await channel.send([message(to="nosuchuser", channel="wecom")])
    assert result.outcome is Outcome.PERMANENT and "81013" in result.detail
    assert sandbox.sent == []


async def test_wecom_token_refresh_on_40014(make: Factory, sandbox: WechatSandbox) -> None:
    """WeCom's invalid-token answer (40014) refreshes the shared token once, like the OA's 40001."""
    channel = await make.wecom()
    await channel.check()
    sandbox.invalidate_tokens()
    [result] = await channel.send([message(to="ZhangWei", channel="wecom")])
    assert result.outcome is Outcome.SENT
    assert sandbox.token_fetches == 2


async def test_oa_and_wecom_tokens_are_kept_apart(make: Factory, sandbox: WechatSandbox) -> None:
    """The two platforms' tokens live under different keys: each channel fetches its own once."""
    oa, wecom = await make.oa(), await make.wecom()
    for _ in range(2):
        assert (await oa.send([message()]))[0].outcome is Outcome.SENT
        assert (await wecom.send([message(to="ZhangWei", channel="wecom")]))[0].outcome is Outcome.SENT
    assert sandbox.token_fetches == 2


# ---- the sandbox's own contract, over raw HTTP ----


@dataclass
class Raw:
    """Plain HTTP to the sandbox, answers as JSON."""

    http: aiohttp.ClientSession
    url: str

    async def get(self, path: str, **query: str) -> dict[str, Any]:
        async with self.http.get(self.url + path, params=query) as response:
            assert response.status == 200
            return dict(await response.json())

    async def post(self, path: str, body: dict[str, Any], **query: str) -> dict[str, Any]:
        async with self.http.post(self.url + path, params=query, json=body) as response:
            assert response.status == 200
            return dict(await response.json())

    async def oa_token(self) -> str:
        answer = await self.get(
            "/cgi-bin/token", grant_type="client_credential", appid=SANDBOX_APPID, secret=SANDBOX_SECRET
        )
        return str(answer["access_token"])


@pytest.fixture
async def raw(sandbox_url: str) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as http:
        yield Raw(http, sandbox_url)


def template(touser: str = openid(1), **data: str) -> dict[str, Any]:
    values = {
        "thing1": "台风橙色预警",
        "phrase2": "橙色",
        "time3": "2024-07-01 08:30",
        "thing4": "请转移",
        **data,
    }
    return {
        "touser": touser,
        "template_id": SANDBOX_TEMPLATE_ID,
        "data": {key: {"value": value} for key, value in values.items()},
    }


async def test_sandbox_refuses_wrong_credentials(raw: Raw, sandbox: WechatSandbox) -> None:
    """Wrong appid/secret answer 40013/40125 (OA) and wrong corpid/corpsecret 40013/40001 (WeCom), all counted."""
    oa = {"grant_type": "client_credential", "appid": SANDBOX_APPID, "secret": SANDBOX_SECRET}
    assert (await raw.get("/cgi-bin/token", **{**oa, "appid": "wx0"}))["errcode"] == 40013
    assert (await raw.get("/cgi-bin/token", **{**oa, "secret": "x"}))["errcode"] == 40125
    wecom = {"corpid": SANDBOX_CORPID, "corpsecret": SANDBOX_CORPSECRET}
    assert (await raw.get("/cgi-bin/gettoken", **{**wecom, "corpid": "ww0"}))["errcode"] == 40013
    assert (await raw.get("/cgi-bin/gettoken", **{**wecom, "corpsecret": "x"}))["errcode"] == 40001
    answer = await raw.get("/cgi-bin/gettoken", **wecom)
    assert (answer["errcode"], answer["expires_in"]) == (0, 7200) and answer["access_token"]
    assert sandbox.token_fetches == 5


async def test_sandbox_token_rules(raw: Raw, sandbox: WechatSandbox) -> None:
    """No token 41001; a replaced token works through the grace period, then 40001; the newest keeps working."""
    send = "/cgi-bin/message/template/send"
    assert (await raw.post(send, template()))["errcode"] == 41001
    old = await raw.oa_token()
    new = await raw.oa_token()
    assert (await raw.post(send, template(), access_token=old))["errcode"] == 0
    sandbox.replace_grace = 0
    assert (await raw.post(send, template(), access_token=old))["errcode"] == 40001
    assert (await raw.post(send, template(), access_token=new))["errcode"] == 0
    assert (await raw.post("/cgi-bin/message/send", {}, access_token=new))[
        "errcode"
    ] == 40014  # not a WeCom token


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (template(), 0),
        (template(thing1="一" * 21), 47003),
        (template(thing4="两行\n文字"), 47003),
        (template(phrase2="橙色预警级别"), 47003),
        (template(time3="明天早上"), 47003),
        (template(time3="2024-07-01 08:00~2024-07-01 20:00"), 0),
        (template(thing4=""), 47003),
        ({**template(), "template_id": "other"}, 40037),
        (template(touser="not an openid"), 40003),
        (template(touser=openid(43004)), 43004),
    ],
)
async def test_sandbox_checks_template_messages(raw: Raw, body: dict[str, Any], errcode: int) -> None:
    """Template messages are checked against WeChat's 2023 field rules, the template id and the openid."""
    answer = await raw.post("/cgi-bin/message/template/send", body, access_token=await raw.oa_token())
    assert answer["errcode"] == errcode, answer


async def test_sandbox_wecom_partly_unknown_users(raw: Raw, sandbox: WechatSandbox) -> None:
    """A touser naming a known and an unknown user sends to the known one and lists the other in invaliduser."""
    token = str(
        (await raw.get("/cgi-bin/gettoken", corpid=SANDBOX_CORPID, corpsecret=SANDBOX_CORPSECRET))[
            "access_token"
        ]
    )
    body = {
        "touser": "ZhangWei|NoSuchUser",
        "agentid": SANDBOX_AGENTID,
        "msgtype": "text",
        "text": {"content": "预警"},
    }
    answer = await raw.post("/cgi-bin/message/send", body, access_token=token)
    assert (answer["errcode"], answer["invaliduser"]) == (0, "NoSuchUser")
    assert [m.touser for m in sandbox.sent] == ["ZhangWei"]
    wrong_app = await raw.post("/cgi-bin/message/send", {**body, "agentid": 1}, access_token=token)
    assert wrong_app["errcode"] == 40056


# ---- every errcode, from a scripted platform ----

Answer = dict[str, Any] | web.Response


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[list[Answer], str]]:
    """A platform that hands out tokens and answers each message request with the next scripted answer."""
    answers: list[Answer] = []

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"errcode": 0, "access_token": "T", "expires_in": 7200})

    async def send(request: web.Request) -> web.Response:
        answer = answers.pop(0)
        return answer if isinstance(answer, web.Response) else web.json_response(answer)

    app = web.Application()
    for path in ("/cgi-bin/token", "/cgi-bin/gettoken"):
        app.router.add_get(path, token)
    for path in ("/cgi-bin/message/template/send", "/cgi-bin/message/send"):
        app.router.add_post(path, send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield answers, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def builder(make: Factory, platform: str) -> Callable[..., Awaitable[WechatChannel | WecomChannel]]:
    return make.oa if platform == "oa" else make.wecom


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after"),
    [
        ({"errcode": 0, "msgid": 7}, Outcome.SENT, None),
        ({"errcode": 45009}, Outcome.TRANSIENT, 60.0),
        ({"errcode": 45011}, Outcome.TRANSIENT, 60.0),
        ({"errcode": 45033}, Outcome.TRANSIENT, 60.0),
        ({"errcode": 45047}, Outcome.TRANSIENT, 60.0),
        ({"errcode": -1}, Outcome.TRANSIENT, None),
        ({"errcode": 43004}, Outcome.PERMANENT, None),
        ({"errcode": 40003}, Outcome.PERMANENT, None),
        ({"errcode": 81013}, Outcome.PERMANENT, None),
        ({"errcode": 40037}, Outcome.PERMANENT, None),
        ({"errcode": 48001}, Outcome.PERMANENT, None),
        ({"errcode": 0, "invaliduser": "zhangwei", "msgid": "m"}, Outcome.PERMANENT, None),
        ({"errcode": 0, "unlicenseduser": "ZhangWei", "msgid": "m"}, Outcome.PERMANENT, None),
        ({"errcode": 0, "invaliduser": "LiNa", "msgid": "m"}, Outcome.SENT, None),
    ],
)
@pytest.mark.parametrize("platform", ["oa", "wecom"])
async def test_errcode_translation(
    make: Factory,
    scripted: tuple[list[Answer], str],
    platform: str,
    answer: dict[str, Any],
    outcome: Outcome,
    retry_after: float | None,
) -> None:
    """Each platform answer maps to one outcome by errcode alone (never errmsg), the same on both platforms."""
    answers, url = scripted
    if platform == "oa" and ("invaliduser" in answer or "unlicenseduser" in answer):
        outcome = Outcome.SENT  # the OA has no such fields: errcode 0 is a sent message
    answers.append({**answer, "errmsg": "invalid credential, access_token is invalid or not latest"})
    channel = await builder(make, platform)(base_url=url)
    [result] = await channel.send([message(to="ZhangWei", channel=platform)])
    assert (result.outcome, result.retry_after) == (outcome, retry_after), result.detail
    assert answers == []  # exactly one request


@pytest.mark.parametrize("platform", ["oa", "wecom"])
async def test_bad_http_answers(make: Factory, scripted: tuple[list[Answer], str], platform: str) -> None:
    """An HTTP 5xx is transient; a 200 that is not JSON, after the request was written, is ambiguous."""
    answers, url = scripted
    answers += [web.Response(status=502), web.Response(text="<html>portal</html>")]
    channel = await builder(make, platform)(base_url=url)
    results = await channel.send([message(to="ZhangWei", channel=platform)])
    results += await channel.send([message(to="ZhangWei", channel=platform)])
    assert [r.outcome for r in results] == [Outcome.TRANSIENT, Outcome.AMBIGUOUS]
