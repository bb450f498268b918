"""Links people can open: without a usable `server.public_url` an Actual alert still goes out, but its
cadre task messages, escalation reminders and per-message page links carry no link (door to door,
report by phone instead), the omission is audited once, and operators still get every link; drills
keep their links."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from warning.broadcast import AlertRequest, Broadcaster
from warning.channels.base import Message
from warning.channels.registry import page_link
from warning.config import EscalationSettings, EscalationStep, Settings
from warning.deliveries import Batch
from warning.model import Alert, Level
from warning.store import Store

VILLAGE = "331099101201"
PUBLIC = "https://warning.example.gov.cn"  # never contacted: no engine runs in these tests


def settings_for(store: Store, public_url: str) -> Settings:
    base = Settings()
    return replace(
        base,
        redis=replace(base.redis, namespace=store.keys.namespace, allow_volatile=True),
        server=replace(base.server, public_url=public_url),
        escalation=EscalationSettings(
            confirm_within=900.0, steps=(EscalationStep(900.0, "cadre", ("sms",)),)
        ),
    )


async def issue(store: Store, public_url: str, *, exercise: bool = False) -> tuple[Broadcaster, Alert]:
    service = Broadcaster(store, settings_for(store, public_url))
    request = AlertRequest(
        event="台风",
        level=Level.ORANGE,
        areas=(VILLAGE,),
        headline="台风将于今夜登陆",
        instruction="请立即转移到村委会。",
        expires=datetime.now(UTC) + timedelta(hours=6),
        audiences=("vulnerable",),
        exercise=exercise,
    )
    alert, _ = await service.issue(request)
    return service, alert


async def queued_notes(service: Broadcaster, alert: Alert, action: str) -> list[str]:
    """The texts of the contact notes (`task`, `esc0`…) queued on SMS for the alert: what cadres read."""
    stream = service.deliveries.stream_key("sms", True)
    texts: list[str] = []
    for _, fields in await service.store.redis.xrange(stream) or []:
        batch = Batch.from_json((fields or {})["b"])
        if batch.alert_id == alert.id and batch.action == action:
            texts.extend(r.text for r in batch.recipients)
    return texts


def withheld(events: list[dict[str, str]]) -> list[dict[str, str]]:
    return [e for e in events if e["action"] == "withhold_links"]


async def test_actual_alert_on_loopback_tells_cadres_to_go_door_to_door(sample_store: Store) -> None:
    """On a loopback public URL an Actual alert's task SMS has no link but says go door to door and
    phone the duty officer; audited once however often the links are sent; operators keep the links."""
    service, alert = await issue(sample_store, "http://127.0.0.1:9")
    texts = await queued_notes(service, alert, "task")
    assert texts, "the cadres were still told"
    for text in texts:
        assert "/c/" not in text and "http" not in text, text
        assert "逐户上门" in text and "电话报告值班员" in text, text
        assert "（+86" in text, text  # the sample county's township duty officer, with the number to call
    await service.tasks.send_links(alert)  # a resumed fan-out says nothing twice
    events = withheld(await service.alerts.audit_log(alert.id))
    assert len(events) == 1 and "127.0.0.1:9" in events[0]["detail"]
    lists = await service.tasks.lists(alert)
    assert lists and all(task.link.startswith("http://127.0.0.1:9/c/") for task in lists)


async def test_escalation_reminder_has_no_link_either(sample_store: Store) -> None:
    """The cadre's escalation reminder of an Actual alert on loopback asks for a phone report, no link."""
    service, alert = await issue(sample_store, "")
    issued = (await service.reach.milestones(alert.id))["issued"]
    service.reach.clock = lambda: issued + 901  # the escalation reads the reach ledger's clock
    fired = await service.escalation.sweep()
    assert [e.step for e in fired] == ["0"]
    texts = await queued_notes(service, alert, "esc0")
    assert texts and all("/c/" not in t and "电话报告值班员" in t for t in texts), texts


async def test_drill_keeps_links_on_loopback(sample_store: Store) -> None:
    """An exercise on loopback keeps the task links (drills and `warning demo` open them locally)."""
    service, alert = await issue(sample_store, "http://127.0.0.1:9", exercise=True)
    texts = await queued_notes(service, alert, "task")
    assert texts and all("http://127.0.0.1:9/c/" in text and text.startswith("【演练】") for text in texts)
    assert withheld(await service.alerts.audit_log(alert.id)) == []


async def test_actual_alert_with_a_public_url_carries_links(sample_store: Store) -> None:
    """With a public URL phones can open, an Actual alert's task SMS carries the cadre's link."""
    service, alert = await issue(sample_store, PUBLIC)
    texts = await queued_notes(service, alert, "task")
    assert texts and all(f"{PUBLIC}/c/" in text for text in texts)
    assert withheld(await service.alerts.audit_log(alert.id)) == []


async def test_wechat_page_links_follow_the_same_rule(sample_store: Store) -> None:
    """The per-message page link (WeChat/WeCom) is empty for an Actual alert on loopback, kept in a drill."""
    service = Broadcaster(sample_store, settings_for(sample_store, "http://localhost:8080"))
    link = page_link(await service.links.ready())
    expires = datetime.now(UTC) + timedelta(hours=1)

    def message(exercise: bool) -> Message:
        return Message("W1:1:wechat:r:R1", "r:R1", "openid", "台风", "W1", 1, Level.ORANGE, exercise, expires)

    assert link(message(exercise=False)) == ""
    assert link(message(exercise=True)).startswith("http://localhost:8080/r/")
