"""The two-person rule over the whole service (real Redis, the Twilio sandbox over HTTP): an Actual alert
at or above `[approval] level` waits, rendered and unsent, until another approver approves it; return and
reject need a reason; drills self-approve when configured; every move is recorded and audited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Servers
from tests.integration.conftest import County
from tests.integration.console_service import serving, settings_for
from warning.broadcast import AlertRequest, Broadcaster
from warning.config import ApprovalSettings
from warning.errors import AlertError, MissingField
from warning.model import AlertState, Level
from warning.store import Store
from warning.web.app import BROADCASTER, ENGINE, STORE

VILLAGE = "331099101201"


@dataclass
class Service:
    app: web.Application
    base: str
    tokens: dict[str, str]

    @property
    def broadcaster(self) -> Broadcaster:
        return self.app[BROADCASTER]

    async def post(self, who: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.post(self.base + path, json=body) as response,
        ):
            return response.status, await response.json()

    async def get(self, who: str, path: str) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(self.base + path) as response,
        ):
            return response.status, await response.json()


def body(level: str = "red", **changes: Any) -> dict[str, Any]:
    return {
        "event": "台风",
        "level": level,
        "areas": [VILLAGE],
        "headline": "台风将于今夜登陆",
        "instruction": "请低洼地区群众立即转移到村委会避灾点",
        "expires": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        "audiences": ["vulnerable", "public"],
    } | changes


def request_of(document: dict[str, Any]) -> AlertRequest:
    return AlertRequest(
        event=document["event"],
        level=Level(document["level"]),
        areas=tuple(document["areas"]),
        headline=document["headline"],
        instruction=document["instruction"],
        expires=datetime.fromisoformat(document["expires"]),
        audiences=tuple(document["audiences"]),
        exercise=document.get("exercise", False),
    )


@pytest.fixture
async def service(sample_store: Store, servers: Servers) -> AsyncIterator[Service]:
    """The whole service with the SMS channel on the Twilio sandbox, the default rule (orange and up),
    and one operator, two approvers and a viewer."""
    settings = settings_for(sample_store, servers)
    assert settings.approval == ApprovalSettings(level="orange", drills_self_approve=True)
    users = {"值班员": "operator", "领导甲": "approver", "领导乙": "approver", "观察员": "viewer"}
    async with serving(settings, users, channels=["sms"]) as running:
        running.tokens["viewer"] = running.tokens["观察员"]
        yield Service(running.app, running.base, running.tokens)


def phones_in(county: County, area: str) -> set[str]:
    return {r["phone"] for r in county.residents if r["village"].startswith(area) and r["phone"]}


async def test_a_red_actual_waits_unsent_until_another_approver_approves(
    service: Service, county: County
) -> None:
    """Red Actual by an operator: 202 pending_approval, rendered, nothing queued, no SMS; neither the
    operator nor an approver who submitted their own may approve it; another approver issues it and the
    SMS go out."""
    sandbox = service.app[ENGINE].sandbox
    assert sandbox is not None
    status, alert = await service.post("值班员", "/api/v1/alerts", body())
    assert status == 202 and alert["state"] == "pending_approval"
    texts = await service.broadcaster.texts.all(alert["id"], 1)
    assert any("台风将于今夜登陆" in text for text in texts.values())  # the approver sees the exact texts
    status, own = await service.post("领导甲", "/api/v1/alerts", body())
    assert status == 202 and own["state"] == "pending_approval"

    status, refused = await service.post("值班员", f"/api/v1/alerts/{alert['id']}/approve")
    assert status == 403  # an operator has no approve action at all
    status, refused = await service.post("领导甲", f"/api/v1/alerts/{own['id']}/approve")
    assert status == 409 and refused["error"]["code"] == "conflict"
    assert "两人规则" in refused["error"]["message"]
    assert "须由另一位审批人批准" in refused["error"]["message"]
    await asyncio.sleep(0.5)  # were anything queued, the SMS worker would have sent it by now
    for pending in (alert, own):
        assert (await service.broadcaster.alerts.get(pending["id"])).state is AlertState.PENDING_APPROVAL
        assert await service.broadcaster.deliveries.states(pending["id"], 1, "sms") == {}
    assert sandbox.messages == []

    waiting = [a.id for a in await service.broadcaster.pending_approvals()]
    assert waiting == [alert["id"], own["id"]]  # longest waiting first
    status, issued = await service.post("领导乙", f"/api/v1/alerts/{alert['id']}/approve")
    assert status == 200 and issued["state"] == "issued"
    assert [a.id for a in await service.broadcaster.pending_approvals()] == [own["id"]]
    phones = phones_in(county, VILLAGE)
    deadline = time.monotonic() + 30
    while {m.to for m in sandbox.messages} & phones != phones:
        assert time.monotonic() < deadline, len(sandbox.messages)
        await asyncio.sleep(0.2)
    assert all("台风将于今夜登陆" in m.body for m in sandbox.messages)
    status, _ = await service.post("领导乙", f"/api/v1/alerts/{alert['id']}/approve")
    assert status == 409  # issued already: approving twice sends nothing twice
    status, other = await service.post("领导乙", f"/api/v1/alerts/{own['id']}/approve")
    assert status == 200 and other["state"] == "issued"


async def test_cap_xml_at_red_waits_too(service: Service) -> None:
    """A CAP message posted by an operator is under the same rule: 202 with cap_action pending_approval."""
    cap = await service.broadcaster.cap_document(
        replace(
            service.broadcaster._draft(
                request_of(body()), [service.broadcaster.audiences["vulnerable"]], datetime.now(UTC)
            ),
            id="CAP-RED-1",
        )
    )
    headers = {"Authorization": f"Bearer {service.tokens['值班员']}", "Content-Type": "application/cap+xml"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(service.base + "/api/v1/alerts", data=cap) as response,
    ):
        document = await response.json()
        assert response.status == 202, document
    assert document["cap_action"] == "pending_approval" and document["state"] == "pending_approval"


async def test_return_needs_a_reason_and_the_revised_draft_is_resubmitted(service: Service) -> None:
    """Return without a reason is 400 naming `reason`; with one the alert is a draft, and its submitter's
    revision waits again under the same id — or issues at once when revised below the level."""
    status, alert = await service.post("值班员", "/api/v1/alerts", body())
    path = f"/api/v1/alerts/{alert['id']}/return"
    for missing in (None, {}, {"reason": "  "}):
        status, error = await service.post("领导甲", path, missing)
        assert status == 400 and error["error"]["field"] == "reason", missing
    status, error = await service.post("领导甲", path, {"reason": "长" * 501})
    assert status == 400 and error["error"]["field"] == "reason"
    status, error = await service.post("领导甲", path, {"reason": "x", "note": "y"})
    assert status == 400 and error["error"]["field"] == "note"
    status, error = await service.post("值班员", path, {"reason": "区域不对"})
    assert status == 403  # returning is an approver's decision
    status, returned = await service.post("领导甲", path, {"reason": "区域不对，请加上邻村"})
    assert status == 200 and returned["state"] == "draft"
    assert await service.broadcaster.pending_approvals() == []

    revised = await service.broadcaster.revise(
        alert["id"],
        request_of(body(headline="台风将于今夜登陆，请立即转移")),
        actor="值班员",
        role="operator",
    )
    assert revised.id == alert["id"] and revised.state is AlertState.PENDING_APPROVAL
    assert revised.headline == "台风将于今夜登陆，请立即转移"
    texts = await service.broadcaster.texts.all(alert["id"], 1)
    assert all("请立即转移" in text for text in texts.values() if "台风将于今夜登陆" in text)
    status, _ = await service.post("领导甲", path, {"reason": "仍需修改"})
    assert status == 200
    below = await service.broadcaster.revise(
        alert["id"], request_of(body("yellow")), actor="值班员", role="operator"
    )
    assert below.state is AlertState.ISSUED and below.level is Level.YELLOW
    with pytest.raises(AlertError):  # only a draft is revised
        await service.broadcaster.revise(alert["id"], request_of(body()), actor="值班员", role="operator")


async def test_reject_needs_a_reason_and_is_final(service: Service) -> None:
    """Reject without a reason is 400; with one the alert is rejected and can never be approved."""
    status, alert = await service.post("值班员", "/api/v1/alerts", body("orange"))
    assert status == 202
    path = f"/api/v1/alerts/{alert['id']}/reject"
    status, error = await service.post("领导甲", path)
    assert status == 400 and error["error"]["field"] == "reason"
    status, rejected = await service.post("领导甲", path, {"reason": "天气已转好，无需发布"})
    assert status == 200 and rejected["state"] == "rejected"
    status, _ = await service.post("领导乙", f"/api/v1/alerts/{alert['id']}/approve")
    assert status == 409
    with pytest.raises(MissingField):
        await service.broadcaster.reject(alert["id"], actor="cli", reason="")


async def test_below_the_level_and_with_the_rule_off_alerts_issue_directly(service: Service) -> None:
    """Yellow issues at once (201) under the default rule; red issues at once with the rule off, and
    orange with the rule at red."""
    status, yellow = await service.post("值班员", "/api/v1/alerts", body("yellow"))
    assert status == 201 and yellow["state"] == "issued"
    settings = service.broadcaster.settings
    off = Broadcaster(service.app[STORE], replace(settings, approval=ApprovalSettings(level="off")))
    assert not off.needs_approval(request_of(body("red")))
    alert = await off.submit(request_of(body("red")), actor="值班员", role="operator")
    assert alert.state is AlertState.ISSUED
    at_red = Broadcaster(service.app[STORE], replace(settings, approval=ApprovalSettings(level="red")))
    assert not at_red.needs_approval(request_of(body("orange")))
    assert at_red.needs_approval(request_of(body("red")))
    assert service.broadcaster.needs_approval(request_of(body("orange")))


async def test_drills_self_approve_when_configured(service: Service) -> None:
    """A red drill issues at once by default; with drills_self_approve off it waits and its submitter may
    not approve it; with it on, a waiting drill may be approved by its submitter."""
    status, drill = await service.post("值班员", "/api/v1/alerts", body(exercise=True))
    assert status == 201 and drill["state"] == "issued" and drill["exercise"] is True
    settings = service.broadcaster.settings
    strict = Broadcaster(
        service.app[STORE], replace(settings, approval=ApprovalSettings(drills_self_approve=False))
    )
    waiting = await strict.submit(request_of(body(exercise=True)), actor="领导甲", role="approver")
    assert waiting.state is AlertState.PENDING_APPROVAL
    with pytest.raises(AlertError, match="两人规则"):
        await strict.approve(waiting.id, actor="领导甲", role="approver")
    approved = await service.broadcaster.approve(waiting.id, actor="领导甲", role="approver")
    assert approved.state is AlertState.ISSUED


async def test_moves_and_audit_record_who_when_and_why(service: Service) -> None:
    """Submit, return (with its reason), revise, approve and cancel are each a move with actor, role and
    time, in order, served by GET /moves; the audit log holds every one of them."""
    started = datetime.now(UTC)
    status, alert = await service.post("值班员", "/api/v1/alerts", body())
    alert_id = alert["id"]
    await service.post("领导甲", f"/api/v1/alerts/{alert_id}/return", {"reason": "请补充转移地点"})
    await service.broadcaster.revise(alert_id, request_of(body()), actor="值班员", role="operator")
    with pytest.raises(AlertError):  # the reviser is an author too
        await service.broadcaster.approve(alert_id, actor="值班员", role="operator")
    status, _ = await service.post("领导乙", f"/api/v1/alerts/{alert_id}/approve")
    assert status == 200
    status, _ = await service.post("值班员", f"/api/v1/alerts/{alert_id}/cancel", {"note": "解除"})
    assert status == 200

    status, document = await service.get("viewer", f"/api/v1/alerts/{alert_id}/moves")
    assert status == 200 and document["state"] == "cancelled"
    moves = document["moves"]
    assert [(m["action"], m["actor"], m["role"]) for m in moves] == [
        ("submit", "值班员", "operator"),
        ("return", "领导甲", "approver"),
        ("revise", "值班员", "operator"),
        ("approve", "领导乙", "approver"),
        ("cancel", "值班员", "operator"),
    ]
    assert moves[1]["reason"] == "请补充转移地点" and moves[4]["reason"] == "解除"
    times = [datetime.fromisoformat(m["at"]) for m in moves]
    assert times == sorted(times) and started <= times[0] <= datetime.now(UTC)
    actions = {m["action"] for m in moves}
    audited = [e for e in await service.broadcaster.alerts.audit_log(alert_id) if e["action"] in actions]
    assert [(e["action"], e["actor"], e["role"]) for e in audited] == [
        (m["action"], m["actor"], m["role"]) for m in moves
    ]
    assert "请补充转移地点" in audited[1]["detail"]
    status, _ = await service.get("viewer", "/api/v1/alerts/NO-SUCH/moves")
    assert status == 404


async def test_two_approvers_at_once_issue_it_once(service: Service) -> None:
    """Two approvers clicking approve together: one issues it, the other is told it is no longer waiting."""
    status, alert = await service.post("值班员", "/api/v1/alerts", body())
    assert status == 202
    path = f"/api/v1/alerts/{alert['id']}/approve"
    answers = await asyncio.gather(service.post("领导甲", path), service.post("领导乙", path))
    assert sorted(status for status, _ in answers) == [200, 409]
    moves = await service.broadcaster.moves(alert["id"])
    assert [m.action for m in moves].count("approve") == 1
