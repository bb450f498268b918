"""What operators see of delivery trouble over HTTP: dead letters listed with their reason and requeued by
an operator (not a viewer); a channel's open circuit breaker in /readyz and /metrics."""

from __future__ import annotations

import json
import time

import aiohttp

from tests.integration.test_api_probes import Service, service  # noqa: F401 (the fixture)
from warning.channels.breaker import breakers_key
from warning.deliveries import Batch
from warning.web.app import BROADCASTER, STORE


async def _dead_letter(svc: Service) -> Batch:
    """Dead-letter the Actual alert's queued SMS as a worker does after Twilio refused the numbers."""
    broadcaster = svc.app[BROADCASTER]
    deliveries = broadcaster.deliveries
    entries = await deliveries.redis.xrange(deliveries.stream_key("sms", True))  # orange: the fast lane
    batch = next(
        b
        for b in (Batch.from_json(fields["b"]) for _, fields in entries)
        if b.alert_id == svc.actual.id and b.ledger == "sms"
    )
    await deliveries.move(
        batch.alert_id, batch.version, batch.ledger, [(r.id, "s") for r in batch.recipients]
    )
    await deliveries.move(
        batch.alert_id, batch.version, batch.ledger, [(r.id, "F") for r in batch.recipients]
    )
    await deliveries.redis.xadd(
        deliveries.dead_key("sms"),
        {"b": batch.to_json(), "reason": json.dumps(["Twilio HTTP 400 code 21211"])},
    )
    return batch


async def test_dead_letters_listed_and_requeued_by_an_operator(service: Service) -> None:  # noqa: F811
    batch = await _dead_letter(service)
    url = f"{service.base}/api/v1/deadletters"
    viewer = {"Authorization": f"Bearer {service.tokens['viewer']}"}
    operator = {"Authorization": f"Bearer {service.tokens['operator']}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params={"channel": "sms"}, headers=viewer) as response:
            assert response.status == 200
            listed = await response.json()
        async with session.post(f"{url}/requeue", json={"channel": "sms"}, headers=viewer) as response:
            assert response.status == 403
        async with session.get(url, params={"channel": "fax"}, headers=viewer) as response:
            assert response.status == 400
            assert (await response.json())["error"]["field"] == "channel"
        for query in ("limit=5&limit=6", "channel=sms&channel=voice"):  # which one would be meant?
            async with session.get(f"{url}?{query}", headers=viewer) as response:
                assert response.status == 400
                assert (await response.json())["error"]["field"] == query.partition("=")[0]
        async with session.get(f"{service.base}/api/v1/alerts?limit=5&limit=6", headers=viewer) as response:
            assert response.status == 400 and (await response.json())["error"]["field"] == "limit"
        async with session.post(f"{url}/requeue", json={"channel": "sms"}, headers=operator) as response:
            assert response.status == 200
            requeued = await response.json()
        async with session.get(url, headers=viewer) as response:
            after = await response.json()
    [letter] = listed["dead_letters"]
    assert letter["alert_id"] == service.actual.id and letter["recipients"] == len(batch.recipients)
    assert "21211" in letter["reason"] and listed["totals"] == {"sms": 1}
    assert requeued == {"requeued": {"sms": len(batch.recipients)}}
    assert after["dead_letters"] == [] and all(n == 0 for n in after["totals"].values())
    states = await service.app[BROADCASTER].deliveries.states(batch.alert_id, batch.version, "sms")
    assert {states[r.id] for r in batch.recipients} == {"queued"}
    audit = await service.app[BROADCASTER].alerts.audit_log()
    assert any(e.get("action") == "requeue" and e.get("actor") == "u-operator" for e in audit)


async def test_an_open_breaker_makes_readyz_degraded_and_shows_in_metrics(service: Service) -> None:  # noqa: F811
    """A worker (in any process) publishes its breaker in Redis; the service's probes read it."""
    store = service.app[STORE]
    published = {"state": "open", "opened": 1, "retry_in": 4.0, "ts": time.time()}
    stale = {"state": "open", "opened": 1, "retry_in": 4.0, "ts": time.time() - 120}  # a worker long gone
    await store.redis.hset(
        breakers_key(store.keys),
        mapping={
            "sms:host-1-a": json.dumps(published),
            "sms:host-2-b": json.dumps({**published, "state": "closed"}),
            "voice:host-3-c": json.dumps(stale),
        },
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{service.base}/readyz") as response:
            assert response.status == 200
            ready = await response.json()
        async with session.get(f"{service.base}/metrics") as response:
            metrics = await response.text()
    assert ready["status"] == "degraded"
    assert ready["breakers"] == {"sms": {"state": "open", "workers": 2, "open": 1, "retry_in": 4.0}}
    assert 'warning_circuit_state{channel="sms"} 2.0' in metrics
    assert 'warning_circuit_open_workers{channel="sms"} 1.0' in metrics

    await store.redis.hset(
        breakers_key(store.keys), "sms:host-1-a", json.dumps({**published, "state": "closed"})
    )
    async with aiohttp.ClientSession() as session, session.get(f"{service.base}/readyz") as response:
        ready = await response.json()
    assert ready["breakers"]["sms"]["state"] == "closed" and ready["status"] == "ready", ready
