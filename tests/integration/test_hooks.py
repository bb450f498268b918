"""Provider webhooks: valid, forged, changed-parameter and replayed signatures; out-of-order and duplicate
callbacks; SMS replies; WeChat events with sha1 signatures and a freshness window."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.conftest import County
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import Settings
from warning.evidence import Evidence
from warning.model import Alert, Level
from warning.sandbox.twilio_callbacks import sign
from warning.store import Store
from warning.web.hooks import hook_routes
from warning.web.signatures import wechat_signature

VILLAGE = "331099101201"
AUTH_TOKEN = "hook-test-token"
WECHAT_TOKEN = "wechat-server-token"
EVIDENCE = web.AppKey("evidence", Evidence)
STORE = web.AppKey("store", Store)
TWILIO = web.AppKey("twilio", str)
WECHAT = web.AppKey("wechat", str)


@dataclass
class Site:
    service: Broadcaster
    evidence: Evidence
    base: str
    alert: Alert


@pytest.fixture
async def site(sample_store: Store) -> AsyncIterator[Site]:
    base_settings = Settings()
    settings = replace(
        base_settings,
        redis=replace(base_settings.redis, namespace=sample_store.keys.namespace, allow_volatile=True),
    )
    service = Broadcaster(sample_store, settings)
    evidence = Evidence(service)
    app = web.Application()
    app[EVIDENCE], app[STORE], app[TWILIO], app[WECHAT] = evidence, sample_store, AUTH_TOKEN, WECHAT_TOKEN
    server = TestServer(app, host="127.0.0.1")
    # The public URL is the server's own: what the provider signs.
    await server.start_server()
    public = str(server.make_url("")).rstrip("/")
    app.router._frozen = False  # routes depend on the public URL known only once the server listens
    app.add_routes(hook_routes(public, TWILIO, EVIDENCE, STORE, settings.wechat, WECHAT))
    request = AlertRequest(
        event="台风",
        level=Level.ORANGE,
        areas=(VILLAGE,),
        headline="台风将于今夜登陆",
        instruction="请低洼地区群众立即转移到村委会避灾点",
        expires=datetime.now(UTC) + timedelta(hours=6),
        audiences=("vulnerable", "public"),
    )
    alert, _ = await service.issue(request)
    try:
        yield Site(service, evidence, public, alert)
    finally:
        await server.close()


async def sent(site: Site, resident: str, ledger: str = "sms") -> str:
    """Mark a resident's delivery sent, as a worker would; return its delivery key."""
    deliveries = site.service.deliveries
    rid = f"r:{resident}"
    assert await deliveries.move(site.alert.id, site.alert.version, ledger, [(rid, "s")]) == "1"
    assert await deliveries.move(site.alert.id, site.alert.version, ledger, [(rid, "S")]) == "1"
    return f"{site.alert.id}:{site.alert.version}:{ledger}:{rid}"


async def twilio_post(
    session: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    signed_params: dict[str, str] | None = None,
    idempotency: str | None = None,
    signed_url: str | None = None,
) -> int:
    headers = {"X-Twilio-Signature": sign(signed_url or url, signed_params or params, token)}
    headers["I-Twilio-Idempotency-Token"] = idempotency or str(uuid.uuid4())
    async with session.post(url, data=params, headers=headers) as response:
        return response.status


def a_resident(county: County) -> dict[str, str]:
    return next(r for r in county.residents if r["village"] == VILLAGE and r["phone"])


async def test_status_callback_signatures(site: Site, county: County) -> None:
    person = a_resident(county)
    key = await sent(site, person["id"])
    url = f"{site.base}/hooks/twilio/status?d={key}"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": person["phone"]}
    state = site.service.deliveries.state
    async with aiohttp.ClientSession() as session:
        # Forged (wrong key), and a parameter changed after signing: 403, nothing changes.
        assert await twilio_post(session, url, params, token="not-the-token") == 403
        changed = dict(params, MessageStatus="failed")
        assert await twilio_post(session, url, changed, signed_params=params) == 403
        other = f"{site.base}/hooks/twilio/status?d={key}x"  # the query (which delivery) changed
        assert await twilio_post(session, other, params, signed_url=url) == 403
        assert await state(site.alert.id, 1, "sms", f"r:{person['id']}") == "sent"
        # Valid: delivered, and the resident is notified.
        assert await twilio_post(session, url, params, idempotency="same") == 204
        assert await state(site.alert.id, 1, "sms", f"r:{person['id']}") == "delivered"
        # Replayed: counts once (the replay guard is set in the receipt's own round trip; applying a
        # "delivered" again changes nothing) — and a replayed "queued" cannot move it back either.
        assert await twilio_post(session, url, params, idempotency="same") == 204
        queued = dict(params, MessageStatus="queued")
        assert await twilio_post(session, url, queued, idempotency="same") == 204
        assert await state(site.alert.id, 1, "sms", f"r:{person['id']}") == "delivered"
        assert await site.service.deliveries.redis.exists(
            site.service.store.keys.key("seen", "twilio", "same")
        )
    counts = await site.service.deliveries.counts(site.alert.id, 1, ["sms"])
    assert counts["sms"].get("delivered") == 1
    entry = await site.service.reach.entry(site.alert.id, person["id"])
    assert entry is not None and entry.state == "notified"
    assert (await site.service.reach.counts(site.alert.id)).scope("all")["notified"] == 1


async def test_out_of_order_and_duplicate_status_callbacks(site: Site, county: County) -> None:
    people = [r for r in county.residents if r["village"] == VILLAGE and r["phone"]][:3]
    keys = [await sent(site, p["id"]) for p in people]
    async with aiohttp.ClientSession() as session:
        for status in ("delivered", "sent", "queued", "delivered", "undelivered"):  # late "sent" and "failed"
            url = f"{site.base}/hooks/twilio/status?d={keys[0]}"
            assert await twilio_post(session, url, {"MessageSid": "SM0", "MessageStatus": status}) == 204
        for status in ("undelivered", "delivered"):  # failed first, then the carrier delivered after all
            url = f"{site.base}/hooks/twilio/status?d={keys[1]}"
            assert await twilio_post(session, url, {"MessageSid": "SM1", "MessageStatus": status}) == 204
        for _ in range(3):
            url = f"{site.base}/hooks/twilio/status?d={keys[2]}"
            assert (
                await twilio_post(session, url, {"MessageSid": "SM2", "MessageStatus": "undelivered"}) == 204
            )
    states = await site.service.deliveries.states(site.alert.id, 1, "sms")
    assert [states[f"r:{p['id']}"] for p in people] == ["delivered", "delivered", "failed"]
    counts = (await site.service.deliveries.counts(site.alert.id, 1, ["sms"]))["sms"]
    assert counts.get("delivered") == 2 and counts.get("failed") == 1
    reach = await site.service.reach.counts(site.alert.id)
    assert reach.scope("all")["notified"] == 2


async def test_sms_reply_acknowledges_and_forged_reply_changes_nothing(site: Site, county: County) -> None:
    person = a_resident(county)
    await sent(site, person["id"])
    await site.evidence.on_sent(*_sent_batch(site, person))
    url = f"{site.base}/hooks/twilio/sms"
    params = {"MessageSid": "SMreply", "From": person["phone"], "To": "+15005550006", "Body": "收到"}
    async with aiohttp.ClientSession() as session:
        assert await twilio_post(session, url, params, token="forged") == 403
        assert (await site.service.reach.entry(site.alert.id, person["id"])).state == "pending"  # type: ignore[union-attr]
        assert await twilio_post(session, url, params) == 200
        unknown = dict(params, From="+8617400000000", MessageSid="SMx")
        assert await twilio_post(session, url, unknown) == 200
    assert (await site.service.reach.entry(site.alert.id, person["id"])).state == "acknowledged"  # type: ignore[union-attr]


def _sent_batch(site: Site, person: dict[str, str]):  # type: ignore[no-untyped-def]
    from warning.channels.base import DeliveryResult, Outcome
    from warning.deliveries import Batch, Recipient

    recipient = Recipient(f"r:{person['id']}", person["phone"], "zh-CN")
    batch = Batch(site.alert.id, 1, "sms", "public", VILLAGE, (recipient,))
    return batch, [(recipient, DeliveryResult("k", Outcome.SENT, provider_id="SM9"))]


def wechat_query(timestamp: int | None = None, nonce: str | None = None, token: str = WECHAT_TOKEN) -> str:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or uuid.uuid4().hex[:10]
    return f"signature={wechat_signature(token, ts, nonce)}&timestamp={ts}&nonce={nonce}"


async def test_wechat_url_check_and_events(site: Site, county: County) -> None:
    person = next(r for r in county.residents if r["village"] == VILLAGE and r["wechat_openid"])
    deliveries = site.service.deliveries
    rid = f"r:{person['id']}"
    await deliveries.move(site.alert.id, 1, "wechat", [(rid, "s")])
    await deliveries.move(site.alert.id, 1, "wechat", [(rid, "S")])
    from warning.channels.base import DeliveryResult, Outcome
    from warning.deliveries import Batch, Recipient

    recipient = Recipient(rid, person["wechat_openid"], "zh-CN")
    await site.evidence.on_sent(
        Batch(site.alert.id, 1, "wechat", "public", VILLAGE, (recipient,)),
        [(recipient, DeliveryResult("k", Outcome.SENT, provider_id="2001"))],
    )
    event = (
        "<xml><ToUserName>gh_1</ToUserName><FromUserName>" + person["wechat_openid"] + "</FromUserName>"
        "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event>"
        "<MsgID>2001</MsgID><Status>success</Status></xml>"
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{site.base}/hooks/wechat?{wechat_query()}&echostr=hello") as r:
            assert r.status == 200 and await r.text() == "hello"
        async with session.get(f"{site.base}/hooks/wechat?{wechat_query(token='other')}&echostr=hello") as r:
            assert r.status == 403
        stale = wechat_query(timestamp=int(time.time()) - 3600)
        async with session.post(f"{site.base}/hooks/wechat?{stale}", data=event.encode()) as r:
            assert r.status == 403  # outside the freshness window
        async with session.post(
            f"{site.base}/hooks/wechat?{wechat_query(token='forged')}", data=event.encode()
        ) as r:
            assert r.status == 403
        assert await deliveries.state(site.alert.id, 1, "wechat", rid) == "sent"
        query = wechat_query(nonce="fixed-nonce")
        async with session.post(f"{site.base}/hooks/wechat?{query}", data=event.encode()) as r:
            assert r.status == 200 and await r.text() == "success"
        async with session.post(f"{site.base}/hooks/wechat?{query}", data=event.encode()) as r:
            assert r.status == 200  # a replay is answered, and changes nothing
        bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;</xml>'
        async with session.post(f"{site.base}/hooks/wechat?{wechat_query()}", data=bomb.encode()) as r:
            assert r.status == 400
    assert await deliveries.state(site.alert.id, 1, "wechat", rid) == "delivered"
    assert (await deliveries.counts(site.alert.id, 1, ["wechat"]))["wechat"].get("delivered") == 1


async def test_a_wechat_result_that_overtakes_the_worker_is_applied_when_it_catches_up(
    site: Site, county: County
) -> None:
    """TEMPLATESENDJOBFINISH may arrive before the worker recorded the msgid: it waits, then counts."""
    from warning.channels.base import DeliveryResult, Outcome
    from warning.deliveries import Batch, Recipient

    person = next(r for r in county.residents if r["village"] == VILLAGE and r["wechat_openid"])
    rid = f"r:{person['id']}"
    await site.service.deliveries.move(site.alert.id, 1, "wechat", [(rid, "s")])
    assert await site.evidence.wechat_result("3001", success=True) is False  # nothing to apply it to yet
    assert await site.service.deliveries.state(site.alert.id, 1, "wechat", rid) == "sending"
    await site.service.deliveries.move(site.alert.id, 1, "wechat", [(rid, "S")])
    recipient = Recipient(rid, person["wechat_openid"], "zh-CN")
    await site.evidence.on_sent(
        Batch(site.alert.id, 1, "wechat", "public", VILLAGE, (recipient,)),
        [(recipient, DeliveryResult("k", Outcome.SENT, provider_id="3001"))],
    )
    assert await site.service.deliveries.state(site.alert.id, 1, "wechat", rid) == "delivered"
