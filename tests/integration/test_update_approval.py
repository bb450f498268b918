"""The two-person rule for updates (real Redis, the Twilio sandbox over HTTP): an update of an issued alert
that reaches `[approval] level` waits as the alert's proposal while the issued version keeps going out,
until an approver other than its proposer approves it; return and reject need a reason and drop it; an
update below the level (or a drill, self-approved) issues at once, queued after the answer."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.conftest import Servers
from tests.integration.conftest import County
from tests.integration.console_service import Service, serving, settings_for, sign_in
from warning.cap.emit import cap_identifier, cap_time
from warning.config import ApprovalSettings
from warning.fanout import FanoutReport
from warning.model import Alert, AlertState, Level
from warning.store import Store
from warning.web.app import ENGINE

VILLAGE = "331099101201"
RED_HEADLINE = "台风加强为红色：今夜正面登陆"

USERS = {"值班员": "operator", "领导甲": "approver", "领导乙": "approver", "观察员": "viewer"}


@pytest.fixture
async def service(sample_store: Store, servers: Servers) -> AsyncIterator[Service]:
    """The whole service with the SMS channel on the Twilio sandbox and the default rule (orange and up)."""
    settings = settings_for(sample_store, servers)
    assert settings.approval == ApprovalSettings(level="orange", drills_self_approve=True)
    async with serving(settings, USERS, channels=["sms"]) as running:
        yield running


async def call(service: Service, who: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {service.tokens[who]}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(service.base + path, json=body) as response,
    ):
        return response.status, await response.json()


def body(level: str = "yellow", **changes: Any) -> dict[str, Any]:
    return {
        "event": "台风",
        "level": level,
        "areas": [VILLAGE],
        "headline": "台风将于明日登陆",
        "instruction": "请低洼地区群众做好转移准备",
        "expires": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        "audiences": ["vulnerable", "public"],
    } | changes


def red(**changes: Any) -> dict[str, Any]:
    return body("red", headline=RED_HEADLINE, instruction="请立即转移到村委会避灾点") | changes


def phones_in(county: County, area: str) -> set[str]:
    return {r["phone"] for r in county.residents if r["village"].startswith(area) and r["phone"]}


async def wait_for(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def issued_yellow(service: Service, county: County, who: str = "值班员") -> dict[str, Any]:
    """A yellow Actual alert issued (201) and its SMS sent to every phone of the village."""
    status, alert = await call(service, who, "/api/v1/alerts", body())
    assert status == 201 and alert["state"] == "issued"
    sandbox = service.app[ENGINE].sandbox
    assert sandbox is not None
    phones = phones_in(county, VILLAGE)
    await wait_for(lambda: {m.to for m in sandbox.messages} >= phones, "version 1 reached every phone")
    return alert


def red_sent(service: Service) -> list[str]:
    sandbox = service.app[ENGINE].sandbox
    assert sandbox is not None
    return [m.body for m in sandbox.messages if RED_HEADLINE in m.body]


async def test_an_update_to_red_waits_until_another_approver_approves_it(
    service: Service, county: County
) -> None:
    """An update of an issued yellow Actual to red: 202, the alert stays version 1, nothing of version 2
    is queued or sent; its proposer may not approve it (409 two-person) though the v1 submitter may;
    approved, version 2 goes out to every phone."""
    alert = await issued_yellow(service, county, who="领导乙")
    alert_id = alert["id"]
    broadcaster = service.broadcaster

    status, answer = await call(service, "领导甲", f"/api/v1/alerts/{alert_id}/update", red())
    assert status == 202, answer
    assert answer["state"] == "issued" and answer["version"] == 1 and answer["level"] == "yellow"
    proposal = answer["proposal"]
    assert proposal["proposed_by"] == "领导甲" and proposal["version"] == 1
    assert proposal["request"]["level"] == "red" and proposal["request"]["headline"] == RED_HEADLINE
    await asyncio.sleep(0.5)  # were anything queued, the SMS worker would have sent it by now
    kept = await broadcaster.alerts.get(alert_id)
    assert kept.version == 1 and kept.level is Level.YELLOW and kept.state is AlertState.ISSUED
    assert await broadcaster.deliveries.states(alert_id, 2, "sms") == {}
    assert red_sent(service) == []
    assert [a.id for a in await broadcaster.pending_approvals()] == [alert_id]

    status, refused = await call(service, "值班员", f"/api/v1/alerts/{alert_id}/approve")
    assert status == 403  # an operator has no approve action
    status, refused = await call(service, "领导甲", f"/api/v1/alerts/{alert_id}/approve")
    assert status == 409 and "两人规则" in refused["error"]["message"]
    assert "由您（领导甲）提出" in refused["error"]["message"]
    assert (await broadcaster.alerts.get(alert_id)).version == 1 and red_sent(service) == []

    status, approved = await call(service, "领导乙", f"/api/v1/alerts/{alert_id}/approve")
    assert status == 200, approved
    assert approved["version"] == 2 and approved["level"] == "red" and approved["msg_type"] == "Update"
    assert await broadcaster.proposal(alert_id) is None and await broadcaster.pending_approvals() == []
    phones = phones_in(county, VILLAGE)
    sandbox = service.app[ENGINE].sandbox
    assert sandbox is not None
    await wait_for(
        lambda: {m.to for m in sandbox.messages if RED_HEADLINE in m.body} >= phones,
        "version 2 reached every phone",
    )
    moves = [(m.action, m.actor) for m in await broadcaster.moves(alert_id)]
    assert moves == [
        ("issue", "领导乙"),
        ("propose_update", "领导甲"),
        ("approve", "领导乙"),
        ("update", "领导甲"),  # the content stays the proposer's
    ]
    audited = [e["action"] for e in await broadcaster.alerts.audit_log(alert_id)]
    assert {"propose_update", "approve", "update"} <= set(audited)
    status, _ = await call(service, "领导乙", f"/api/v1/alerts/{alert_id}/approve")
    assert status == 409  # nothing waits any more


async def test_return_and_reject_need_a_reason_and_leave_version_1_going_out(
    service: Service, county: County
) -> None:
    """Return and reject of a waiting update: 400 naming `reason` without one; with one the update is
    dropped, the move recorded with the reason, and version 1 is what stays issued; a second proposal
    replaces a waiting one."""
    alert = await issued_yellow(service, county)
    alert_id, broadcaster = alert["id"], service.broadcaster
    path = f"/api/v1/alerts/{alert_id}/update"
    status, _ = await call(service, "值班员", path, red(headline="第一份：台风加强"))
    assert status == 202
    status, second = await call(service, "值班员", path, red())
    assert status == 202 and second["proposal"]["request"]["headline"] == RED_HEADLINE
    waiting = await broadcaster.proposal(alert_id)
    assert waiting is not None and waiting.request["headline"] == RED_HEADLINE

    for action, reason in (("return", "请写明避灾点名称"), ("reject", "雷达显示台风已减弱")):
        status, error = await call(service, "领导甲", f"/api/v1/alerts/{alert_id}/{action}")
        assert status == 400 and error["error"]["field"] == "reason", action
        status, error = await call(service, "领导甲", f"/api/v1/alerts/{alert_id}/{action}", {"reason": " "})
        assert status == 400 and error["error"]["field"] == "reason", action
        assert await broadcaster.proposal(alert_id) is not None
        status, answer = await call(
            service, "领导甲", f"/api/v1/alerts/{alert_id}/{action}", {"reason": reason}
        )
        assert status == 200, answer
        assert answer["state"] == "issued" and answer["version"] == 1 and answer["level"] == "yellow"
        assert await broadcaster.proposal(alert_id) is None
        assert await broadcaster.pending_approvals() == []
        last = (await broadcaster.moves(alert_id))[-1]
        assert (last.action, last.actor, last.reason) == (action, "领导甲", reason)
        if action == "return":
            status, _ = await call(service, "值班员", path, red())
            assert status == 202
    status, _ = await call(service, "领导乙", f"/api/v1/alerts/{alert_id}/approve")
    assert status == 409
    await asyncio.sleep(0.5)
    assert (await broadcaster.alerts.get(alert_id)).version == 1
    assert await broadcaster.deliveries.states(alert_id, 2, "sms") == {} and red_sent(service) == []
    actions = [m.action for m in await broadcaster.moves(alert_id)]
    assert actions == ["issue", "propose_update", "propose_update", "return", "propose_update", "reject"]


async def test_below_the_level_an_update_issues_at_once_and_is_queued_after_the_answer(
    service: Service, county: County
) -> None:
    """Yellow → yellow with a new headline: 200 version 2 while the fan-out has not even started (it is
    held back here), then version 2 reaches every phone."""
    alert = await issued_yellow(service, county)
    broadcaster = service.broadcaster
    gate = asyncio.Event()
    original: Callable[..., Awaitable[FanoutReport]] = broadcaster.fan_out

    async def held(queued: Alert, **kwargs: Any) -> FanoutReport:
        await gate.wait()
        return await original(queued, **kwargs)

    broadcaster.fan_out = held  # type: ignore[method-assign]
    headline = "台风路径北移：明日午后登陆"
    status, answer = await asyncio.wait_for(
        call(service, "值班员", f"/api/v1/alerts/{alert['id']}/update", body(headline=headline)), 10
    )
    assert status == 200 and answer["version"] == 2 and "proposal" not in answer
    assert await broadcaster.deliveries.states(alert["id"], 2, "sms") == {}  # not queued yet
    gate.set()
    sandbox = service.app[ENGINE].sandbox
    assert sandbox is not None
    phones = phones_in(county, VILLAGE)
    await wait_for(lambda: {m.to for m in sandbox.messages if headline in m.body} >= phones, "v2 sent")


async def test_a_drill_update_to_red_self_approves_but_an_actual_stays_under_the_rule(
    service: Service, county: County
) -> None:
    """A drill updated to red issues at once (drills_self_approve); an Actual alert updated to red with
    `exercise: true` still waits (an update does not turn it into a self-approved drill)."""
    status, drill = await call(service, "值班员", "/api/v1/alerts", body(exercise=True))
    assert status == 201 and drill["exercise"] is True
    status, answer = await call(service, "值班员", f"/api/v1/alerts/{drill['id']}/update", red(exercise=True))
    assert status == 200 and answer["version"] == 2 and answer["level"] == "red" and answer["exercise"]
    alert = await issued_yellow(service, county)
    status, answer = await call(service, "值班员", f"/api/v1/alerts/{alert['id']}/update", red(exercise=True))
    assert status == 202 and answer["version"] == 1


async def test_cancel_drops_a_waiting_update_and_cap_updates_wait_too(
    service: Service, county: County
) -> None:
    """A CAP Update posted by an operator that raises the level waits like a JSON update (202,
    cap_action pending_approval); cancelling the alert drops it, so it can never be approved."""
    alert = await issued_yellow(service, county)
    broadcaster = service.broadcaster
    v1 = await broadcaster.alerts.get(alert["id"])
    v2 = replace(
        v1,
        version=2,
        msg_type="Update",
        level=Level.RED,
        headline=RED_HEADLINE,
        references=(f"{v1.sender},{cap_identifier(v1)},{cap_time(v1.sent)}",),
    )
    headers = {"Authorization": f"Bearer {service.tokens['值班员']}", "Content-Type": "application/cap+xml"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(service.base + "/api/v1/alerts", data=await broadcaster.cap_document(v2)) as response,
    ):
        document = await response.json()
        assert response.status == 202, document
    assert document["cap_action"] == "pending_approval" and document["version"] == 1
    assert (await broadcaster.alerts.get(v1.id)).version == 1 and await broadcaster.proposal(v1.id)
    status, _ = await call(service, "值班员", f"/api/v1/alerts/{v1.id}/cancel", {"silent": True})
    assert status == 200
    assert await broadcaster.proposal(v1.id) is None and await broadcaster.pending_approvals() == []
    status, _ = await call(service, "领导乙", f"/api/v1/alerts/{v1.id}/approve")
    assert status == 409
    assert red_sent(service) == []


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def _element(page: str, marker: str) -> str:
    """From `marker` to the end of its section."""
    start = page.index(marker)
    return page[start : page.index("</section>", start)]


async def test_console_update_waits_on_the_review_page_and_another_approver_approves_it(
    service: Service, county: County
) -> None:
    """Compose ?from=ID of an issued yellow alert says red needs approval; submitting red goes to the
    review page, where another approver sees the proposed headline, the level change, who proposed it,
    and approves it → the live page, version 2."""
    alert = await issued_yellow(service, county)
    alert_id = alert["id"]
    operator, op_csrf = await sign_in(service.base, "值班员")
    approver, ap_csrf = await sign_in(service.base, "领导甲")
    try:
        async with operator.get(f"{service.base}/console/compose?from={alert_id}") as response:
            assert response.status == 200
            page = await response.text()
        assert f'name="updates" value="{alert_id}"' in page
        matrix = html.unescape(re.search(r'data-approval="([^"]*)"', page).group(1))  # type: ignore[union-attr]
        assert '"red": {"exercise": true, "actual": true}' in matrix
        assert '"yellow": {"exercise": false, "actual": false}' in matrix
        fields = [
            ("event", "台风"),
            ("level", "red"),
            ("areas", VILLAGE),
            ("audiences", "vulnerable"),
            ("audiences", "public"),
            ("headline", RED_HEADLINE),
            ("instruction", "请立即转移到村委会避灾点"),
            ("expires", "6"),
            ("updates", alert_id),
            ("csrf", op_csrf),
        ]
        async with operator.post(
            f"{service.base}/console/compose", data=fields, allow_redirects=False
        ) as response:
            assert response.status == 303, await response.text()
            assert response.headers["Location"] == f"/console/approvals/{alert_id}"
        assert (await service.broadcaster.alerts.get(alert_id)).version == 1

        async with operator.get(f"{service.base}/console/alerts/{alert_id}") as response:
            live = await response.text()
        waiting = _text(_element(live, 'id="proposal-waiting"'))
        assert "更新待审批" in waiting and "值班员" in waiting and "红色" in waiting and "第 1 版" in waiting
        async with approver.get(f"{service.base}/") as response:
            dashboard = await response.text()
        assert "更新待审批" in _element(dashboard, 'id="pending"')
        async with approver.get(f"{service.base}/console/approvals") as response:
            listing = await response.text()
        assert f'data-alert="{alert_id}"' in listing and "更新待审批" in listing
        async with approver.get(f"{service.base}/console/approvals/{alert_id}") as response:
            assert response.status == 200
            review = await response.text()
        proposal = _text(_element(review, 'id="proposal"'))
        assert RED_HEADLINE in proposal and "提出人：值班员" in proposal
        assert "红色" in _text(_element(review, 'id="proposal-level"').split("</td>")[0])
        assert RED_HEADLINE in _text(review.split('id="proposal-headline"')[1].split("</td>")[0])
        assert 'id="decision-approve"' in review and 'id="reason"' in review
        assert RED_HEADLINE in _text(_element(review, 'id="preview-box"'))
        proposal_id = re.search(r'name="proposal" value="([^"]+)"', review).group(1)  # type: ignore[union-attr]

        decision = [("decision", "approve"), ("reason", ""), ("proposal", proposal_id), ("csrf", ap_csrf)]
        async with approver.post(
            f"{service.base}/console/approvals/{alert_id}", data=decision, allow_redirects=False
        ) as response:
            assert response.status == 303, await response.text()
            assert response.headers["Location"] == f"/console/alerts/{alert_id}"
        updated = await service.broadcaster.alerts.get(alert_id)
        assert updated.version == 2 and updated.level is Level.RED and updated.headline == RED_HEADLINE
    finally:
        await operator.close()
        await approver.close()


async def test_a_cancel_waits_for_a_decision_in_flight_and_then_cancels(
    service: Service, county: County
) -> None:
    """An approval holding the alert's decision when the cancel arrives ends first; the cancel then
    goes through (it neither fails nor slips in between the approval's steps)."""
    alert = await issued_yellow(service, county)
    broadcaster = service.broadcaster
    released = asyncio.Event()

    async def approving() -> None:
        async with broadcaster._moves.deciding(alert["id"]):  # what approve() holds while it decides
            await released.wait()

    holder = asyncio.create_task(approving())
    await asyncio.sleep(0.1)
    cancelling = asyncio.create_task(
        call(service, "值班员", f"/api/v1/alerts/{alert['id']}/cancel", {"silent": True})
    )
    await asyncio.sleep(0.5)
    assert not cancelling.done(), "the cancel did not wait for the decision in flight"
    assert (await broadcaster.alerts.get(alert["id"])).state is AlertState.ISSUED
    released.set()
    await holder
    status, document = await asyncio.wait_for(cancelling, 10)
    assert status == 200 and document["state"] == "cancelled", document
