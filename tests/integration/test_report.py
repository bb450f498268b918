"""The after-action report's figures on a scripted typhoon night: every number matches the script."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from openpyxl import load_workbook

from tests.integration.conftest import County
from warning.broadcast import AlertRequest, Broadcaster
from warning.channels.base import DeliveryResult, Outcome
from warning.config import EscalationSettings, EscalationStep, Settings
from warning.deliveries import Batch, Recipient
from warning.evidence import Evidence
from warning.i18n import set_language
from warning.model import Level
from warning.store import Store
from warning.views import reach_csv, reach_view, report, report_csv, report_xlsx

TOWNSHIP = "331099101"
A, B, C = "331099101201", "331099101202", "331099101203"
VULNERABLE = {"elderly", "lives_alone", "no_smartphone", "disabled"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def must(county: County, village: str) -> list[dict[str, str]]:
    return [r for r in county.residents if r["village"] == village and VULNERABLE & set(r["tags"].split(";"))]


async def test_report_matches_the_script(sample_store: Store, county: County) -> None:
    base = Settings()
    settings = replace(
        base,
        redis=replace(base.redis, namespace=sample_store.keys.namespace, allow_volatile=True),
        escalation=EscalationSettings(
            confirm_within=900.0,
            coverage_target=1.0,
            steps=(
                EscalationStep(900.0, "cadre", ("sms",)),
                EscalationStep(1800.0, "village_head", ("voice",)),
            ),
        ),
    )
    service = Broadcaster(sample_store, settings)
    clock = Clock()
    service.reach.clock = clock
    evidence = Evidence(service)
    t0 = clock.now
    alert, _ = await service.issue(
        AlertRequest(
            event="台风",
            level=Level.RED,
            areas=(TOWNSHIP,),
            headline="超强台风今夜登陆",
            instruction="请低洼地区群众立即转移到村委会避灾点",
            expires=datetime.now(UTC) + timedelta(hours=6),
            audiences=("vulnerable", "public", "speakers"),
        )
    )
    residents = [r for r in county.residents if r["village"].startswith(TOWNSHIP)]
    vulnerable = [r for r in residents if VULNERABLE & set(r["tags"].split(";"))]
    # T+5 s: the first SMS is accepted.
    clock.now = t0 + 5
    first = Recipient(f"r:{residents[0]['id']}", residents[0]["phone"], "zh-CN")
    await evidence.on_sent(
        Batch(alert.id, 1, "sms", "public", residents[0]["village"], (first,)),
        [(first, DeliveryResult("k", Outcome.SENT, "SM1"))],
    )
    # T+60 s: the loudspeakers of village A play (everyone there is notified); B's and C's stay silent.
    clock.now = t0 + 60
    device = next(s["device_id"] for s in county.speakers if s["village"] == A)
    await service.deliveries.move(alert.id, 1, "speaker", [(f"s:{device}", "s")])
    await service.deliveries.move(alert.id, 1, "speaker", [(f"s:{device}", "S")])
    await evidence.speaker_ack(device, {"status": "played"}, f"{alert.id}:1:speaker:s:{device}")
    await evidence.speaker_ack(device, {"status": "played"}, f"{alert.id}:1:speaker:s:{device}")  # duplicate
    # T+120 s: two residents of C press 1 on their call.
    clock.now = t0 + 120
    pressed = must(county, C)[:2]
    for person in pressed:
        key = f"{alert.id}:1:voice:r:{person['id']}"
        await service.deliveries.move(alert.id, 1, "voice", [(f"r:{person['id']}", "s")])
        await service.deliveries.move(alert.id, 1, "voice", [(f"r:{person['id']}", "S")])
        await evidence.voice_digits(key, "1")
        await evidence.voice_digits(key, "1")  # a replay
    # T+600 s: A's cadre confirms everyone in A in time.
    clock.now = t0 + 600
    for person in must(county, A):
        await evidence.confirm(
            alert, f"contact:{person['cadre']}", person["cadre"], person["id"], "evacuated"
        )
    # T+900 s: the cadre step fires for everyone still open.
    clock.now = t0 + 900
    fired = await service.escalation.sweep()
    # Every loudspeaker of the township but the one that played was silent past its deadline (T+600 s):
    # each sent its village's cadre door to door, before the ladder's first step.
    silent = [e for e in fired if e.step == "spk"]
    step0 = [e for e in fired if e.step == "0"]
    assert len(silent) + len(step0) == len(fired)
    township_devices = {s["device_id"] for s in county.speakers if s["village"].startswith(TOWNSHIP)}
    assert {e.detail.split()[1] for e in silent} == township_devices - {device}
    # T+1200 s: B's cadre confirms half of B, late; one of them needs help.
    clock.now = t0 + 1200
    b_people = must(county, B)
    half = b_people[: len(b_people) // 2]
    for index, person in enumerate(half):
        outcome = "needs_help" if index == 0 else "reached"
        await evidence.confirm(alert, f"contact:{person['cadre']}", person["cadre"], person["id"], outcome)
    # T+1800 s: the village heads of every village below target are called.
    clock.now = t0 + 1800
    step1 = await service.escalation.sweep()

    data = await report(service, alert.id)
    open_after = len(vulnerable) - len(must(county, A)) - len(pressed) - len(half)

    assert data["timings"] == {
        "seconds_to_first_message": 5.0,
        "seconds_to_90pct_machine_reach": None,
        "seconds_to_all_must_reach_confirmed": None,
    }
    m = data["must_reach"]
    assert m["total"] == len(vulnerable)
    assert m["confirmed"] == len(must(county, A)) + len(half)
    assert m["acknowledged"] == len(pressed)
    assert m["notified"] == 0  # A's vulnerable were notified by the loudspeaker, then confirmed
    assert m["pending"] == open_after
    assert m["late"] == len(half)
    assert m["outcomes"]["needs_help"] == 1 and m["outcomes"]["evacuated"] == len(must(county, A))
    assert m["escalated"] == open_after  # every open one sits on a named person's escalation list
    assert data["residents"]["notified"] == sum(
        1 for r in residents if r["village"] == A and not VULNERABLE & set(r["tags"].split(";"))
    )
    villages = {v["code"]: v for v in data["villages"]}
    assert villages[A]["seconds_to_all_confirmed"] == 600.0 and villages[A]["unreached"] == 0
    assert villages[A]["speakers_played"] == 1
    assert villages[B]["confirmed"] == len(half) and villages[B]["seconds_to_all_confirmed"] is None
    cadres = {c["contact_id"]: c for c in data["cadres"]}
    a_cadre = must(county, A)[0]["cadre"]
    assert cadres[a_cadre]["seconds_to_all_confirmed"] == 600.0
    # Step 0 reminded every cadre with open residents at T+900, step 1 every village head below target.
    open_at_900 = {
        p["cadre"]
        for v in (B, C, *[x["code"] for x in county.villages if x["code"].startswith(TOWNSHIP)])
        for p in must(county, v)
        if v != A and p not in pressed
    }
    assert {e.contact_id for e in step0} == open_at_900
    heads = {
        c["id"]
        for c in county.contacts
        if c["role"] == "village_head"
        and c["villages"].startswith(TOWNSHIP)
        and c["villages"] != A
        and any(must(county, c["villages"]))
    }
    assert {e.contact_id for e in step1} == heads
    assert [e["step"] for e in data["escalations"]] == ["spk"] * len(silent) + ["0"] * len(step0) + [
        "1"
    ] * len(step1)
    assert len(data["unreached"]) == open_after
    assert all(
        u["responsible"]["role"] == "village_head" and u["responsible"]["name"] for u in data["unreached"]
    )

    # The same figures in every format.
    rows = list(csv.reader(io.StringIO(report_csv(data))))
    assert ["必达人员总数", str(len(vulnerable))] in rows
    assert ["级别", "红色"] in rows and ["状态", "已发布"] in rows
    book = load_workbook(io.BytesIO(report_xlsx(data)))
    assert book.sheetnames == ["概况", "各村", "干部", "升级记录", "未确认人员", "已确认人员", "发送文本"]
    # Who was confirmed, by whom, when and how: every cadre confirmation, in time order, late ones marked.
    confirmed = list(book["已确认人员"].iter_rows(min_row=2, values_only=True))
    assert {row[2] for row in confirmed[: len(must(county, A))]} == {p["id"] for p in must(county, A)}
    assert {row[2] for row in confirmed} == {p["id"] for p in must(county, A)} | {p["id"] for p in half}
    by_id = {r["id"]: r for r in county.residents}
    contact_names = {c["id"]: c["name"] for c in county.contacts}
    assert all(row[1] == by_id[row[2]]["name"] for row in confirmed)
    assert all(row[5] == contact_names[by_id[row[2]]["cadre"]] for row in confirmed)
    assert {row[2] for row in confirmed if row[7] == "是"} == {p["id"] for p in half}
    assert [row[0] for row in confirmed] == sorted(row[0] for row in confirmed)
    assert book["未确认人员"].max_row == open_after + 1
    json.dumps(data, ensure_ascii=False)
    view = await reach_view(service, alert.id)
    assert view["must_reach"]["confirmed"] == m["confirmed"]
    assert sum(1 for line in reach_csv(view).splitlines() if line.startswith("未确认,")) == open_after

    # What the leader reads: Chinese headers, names not ids, Beijing time, the texts that were sent.
    unreached = book["未确认人员"]
    header = [c.value for c in unreached[1]]
    assert header[:3] == ["姓名", "居民编号", "村名"] and unreached.freeze_panes == "A2"
    assert unreached["A1"].font.b and unreached.column_dimensions["A"].width >= 8
    names = {r["name"] for r in county.residents}
    assert all(row[0] in names for row in unreached.iter_rows(min_row=2, values_only=True))
    assert {row[4] for row in unreached.iter_rows(min_row=2, values_only=True)} <= {"未送达", "已通知待确认"}
    summary = {r[0]: r[1] for r in book["概况"].iter_rows(values_only=True)}
    issued = datetime.fromtimestamp(t0, UTC).astimezone(timezone(timedelta(hours=8)))
    assert summary["发布时间（北京时间）"] == issued.strftime("%Y-%m-%d %H:%M:%S")
    assert summary["标题"] == "超强台风今夜登陆"
    texts = list(book["发送文本"].iter_rows(min_row=2, values_only=True))
    assert {(row[1], row[2]) for row in texts} >= {
        ("重点人群", "短信"),
        ("重点人群", "语音电话"),
        ("公众", "短信"),
    }
    assert all("超强台风今夜登陆" in row[4] for row in texts if row[2] == "短信")
    escalations = list(book["升级记录"].iter_rows(min_row=2, values_only=True))
    assert escalations and all(str(row[0]).startswith(issued.strftime("%Y-%m-%d")) for row in escalations)
    set_language("en")
    try:
        english = load_workbook(io.BytesIO(report_xlsx(data)))
    finally:
        set_language("zh-CN")
    assert english.sheetnames == [
        "summary",
        "villages",
        "cadres",
        "escalations",
        "unreached",
        "confirmed",
        "texts",
    ]
    assert [c.value for c in english["unreached"][1]][:3] == ["name", "resident id", "village"]
