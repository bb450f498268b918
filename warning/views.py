"""What the bureau sees: the live reach view of an alert and its after-action (复盘) report.

Both are built from counters and the small sets (open must-reach residents, task lists, the escalation
log), never by scanning a million deliveries. The same data feeds the API (JSON and CSV), `warning
status` and `warning report` (CSV, XLSX, JSON).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from warning.escalation import escalation_json
from warning.i18n import current_language, t
from warning.labels import BEIJING, beijing, label
from warning.model import Alert, Contact
from warning.reach import Confirmation, Entry
from warning.readmodel import ReadModel
from warning.speaker_states import speaker_counts, speaker_states

UNREACHED_LIMIT = 1000  # rows of unreached residents in one view (the counts are always complete)
UNREACHED_PAGE = 100  # unreached residents in one web page unless `limit` says otherwise
UNREACHED_MAX_PAGE = 1000  # the most the web serves in one page, whatever `limit` asks
VILLAGES_PAGE = 50  # villages in one web page unless `villages_limit` says otherwise
VILLAGES_MAX_PAGE = 500
T = TypeVar("T")
_LEDGER_PURPOSES = ("", ".task", ".spk", ".esc0", ".esc1", ".esc2", ".esc3", ".esc4", ".esc5")


def _iso(ts: float | None) -> str | None:
    # ISO 8601 with the +08:00 offset: machines parse it, and the bureau reads its own clock.
    return datetime.fromtimestamp(ts, BEIJING).isoformat(timespec="seconds") if ts else None


async def _contacts(service: ReadModel, ids: Sequence[str]) -> dict[str, Contact]:
    return await service.directory.contacts(list(dict.fromkeys(i for i in ids if i)))


async def channel_counts(service: ReadModel, alert: Alert) -> dict[str, dict[str, int]]:
    """Deliveries per ledger of the current version: warnings per channel, then task links and escalations."""
    ledgers = [
        f"{channel}{purpose}"
        for channel in ("sms", "voice", "wechat", "wecom", "speaker")
        for purpose in (*_LEDGER_PURPOSES, ".stop", ".clear")
    ]
    counts = await service.deliveries.counts(alert.id, alert.version, ledgers)
    out: dict[str, dict[str, int]] = {}
    for ledger, c in counts.items():
        if c.counts:
            out[ledger] = {name: c.get(name) for name in ("queued", "sent", "delivered", "failed")} | {
                k: v for k, v in c.counts.items() if v
            }
    return out


async def _speakers(
    service: ReadModel, alert: Alert, codes: Sequence[str], milestones: dict[str, float]
) -> dict[str, dict[str, int]]:
    """Loudspeakers per village of `codes` (one page): total, online, played, failed, and silent / offline /
    waiting (warning.speaker_states) — in three round trips whatever the page's size."""
    issued = milestones.get("issued", alert.sent.timestamp())
    overdue = time.time() > issued + service.settings.escalation.speaker_play_within
    states = await speaker_states(service, codes, alert)
    return {code: speaker_counts(states.get(code, []), overdue=overdue) for code in codes}


def _offset(cursor: str) -> int:
    """A villages cursor ("" or a row number) → the row to start at. Raises ValueError otherwise."""
    if not cursor:
        return 0
    if not cursor.isdigit() or len(cursor) > 9:
        raise ValueError(cursor)
    return int(cursor)


async def reach_view(
    service: ReadModel,
    alert_id: str,
    *,
    limit: int = UNREACHED_LIMIT,
    cursor: str = "",
    villages_limit: int | None = None,
    villages_cursor: str = "",
) -> dict[str, Any]:
    """The reach of an alert (DESIGN §5.2 shape, plus audiences, outcomes, milestones, escalations).

    Every figure comes from counters; the lists are pages: up to `limit` unreached must-reach residents
    from `cursor` (`unreached_next` continues, null at the end), up to `villages_limit` villages (None:
    all) from row `villages_cursor` (`villages_next`). Callers serving the web bound both.

    Raises:
        AlertNotFound: unknown id.
        ValueError: a cursor the view did not hand out.
    """
    alert = await service.alerts.get(alert_id)
    reach = service.reach
    counts = await reach.counts(alert.id)
    must = counts.scope("must")
    responsible = await service.escalation.responsible(alert.id)
    heard = await reach.heard(alert.id)
    all_codes = sorted(set(counts.names("v:")) | set(await service.directory.village_codes(alert.areas)))
    first = _offset(villages_cursor)
    village_codes = all_codes[first:] if villages_limit is None else all_codes[first : first + villages_limit]
    after = first + len(village_codes)
    names = {v.code: v.name for v in await service.directory.villages(village_codes)}
    milestones = await reach.milestones(alert.id)
    speakers = await _speakers(service, alert, village_codes, milestones)
    villages = []
    for code in village_codes:
        mv, everyone = counts.scope(f"mv:{code}"), counts.scope(f"v:{code}")
        villages.append(
            {
                "code": code,
                "name": names.get(code, ""),
                "must_reach_total": mv["total"],
                "confirmed": mv["confirmed"],
                "acknowledged": mv["acknowledged"],
                "notified": mv["notified"],
                "pending": mv["pending"],
                "residents": everyone,
                "speakers": speakers[code],
                "heard_at": _iso(heard.get(code)),
                "responsible": _responsible_json(responsible.get(code)),
            }
        )
    entries_out: list[Entry] = []
    next_cursor = cursor
    while True:  # one page when the web asks; page after page up to `limit` for reports
        want = min(limit - len(entries_out), UNREACHED_MAX_PAGE)
        page, next_cursor = await reach.open_page(alert.id, next_cursor, want)
        entries_out += page
        if not next_cursor or len(entries_out) >= limit or limit <= UNREACHED_MAX_PAGE:
            break
    escalated = await service.escalation.is_escalated(alert.id, [e.resident for e in entries_out])
    owners = [responsible.get(e.village, (e.cadre, ""))[0] for e in entries_out]
    contacts = await _contacts(service, owners)
    people = await service.directory.residents([e.resident for e in entries_out])
    resident_villages = sorted({e.village for e in entries_out} - set(names))
    names |= {v.code: v.name for v in await service.directory.villages(resident_villages)}
    unreached_json = []
    for entry, owner, flag in zip(entries_out, owners, escalated, strict=True):
        contact = contacts.get(owner)
        person = people.get(entry.resident)
        unreached_json.append(
            {
                "resident_id": entry.resident,
                "name": person.name if person else "",
                "village": entry.village,
                "village_name": names.get(entry.village, ""),
                "state": entry.state,
                "state_name": label("reach", entry.state),
                "escalated": flag,
                "responsible": {
                    "contact_id": owner,
                    "role": contact.role.value if contact else "",
                    "name": contact.name if contact else "",
                    "role_name": label("role", contact.role.value) if contact else "",
                },
            }
        )
    return {
        "alert_id": alert.id,
        "version": alert.version,
        "state": alert.state.value,
        "state_name": label("state", alert.state.value),
        "level": alert.level.value,
        "level_name": label("level", alert.level.value),
        "must_reach": {
            "total": must["total"],
            "confirmed": must["confirmed"],
            "acknowledged": must["acknowledged"],
            "notified": must["notified"],
            "pending": must["pending"],
            "escalated": await service.escalation.escalated_open(alert.id),
            "late": counts.raw.get("late", 0),
            "outcomes": counts.outcomes(),
        },
        "residents": counts.scope("all"),
        "audiences": {name: counts.scope(f"au:{name}") for name in counts.names("au:")},
        "villages": villages,
        "villages_total": len(all_codes),
        "villages_next": str(after) if after < len(all_codes) else None,
        "unreached": unreached_json,
        "unreached_total": await reach.open_count(alert.id),
        "unreached_next": next_cursor or None,
        "channels": await channel_counts(service, alert),
        "milestones": {k: _iso(v) for k, v in milestones.items() if ":" not in k},
        "escalations": [escalation_json(e) for e in await service.escalation.log(alert.id)],
    }


class ViewCache(Generic[T]):
    """Coalesces identical reads: callers asking for the same key while it is being built share that one
    build (single flight), and its result serves the same key for `ttl` seconds after. So 200 readers of
    one reach view cost about one read of Redis per `ttl`, whatever their number.

    A failed build is not kept: every caller waiting for it gets the error, the next one tries again. A
    caller that gives up (its client went away) does not cancel the build for the others.
    """

    def __init__(self, ttl: float, *, max_entries: int = 256, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.builds = 0  # how many times a value was built (tests and metrics)
        self._done: dict[Hashable, tuple[float, T]] = {}
        self._flying: dict[Hashable, asyncio.Task[T]] = {}

    def forget(self, match: Callable[[Hashable], bool]) -> None:
        """Drop the kept values whose key matches (a write through this process changed them)."""
        self._done = {k: v for k, v in self._done.items() if not match(k)}

    async def get(self, key: Hashable, build: Callable[[], Awaitable[T]]) -> T:
        now = self.clock()
        kept = self._done.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        task = self._flying.get(key)
        if task is None:
            task = asyncio.create_task(self._build(key, build))
            task.add_done_callback(_retrieve)
            self._flying[key] = task
        return await asyncio.shield(task)

    async def _build(self, key: Hashable, build: Callable[[], Awaitable[T]]) -> T:
        try:
            self.builds += 1
            value = await build()
        finally:
            self._flying.pop(key, None)
        if self.ttl > 0:
            now = self.clock()
            if len(self._done) >= self.max_entries:
                self._done = {k: v for k, v in self._done.items() if v[0] > now}
                while len(self._done) >= self.max_entries:  # still full of live entries: drop the oldest
                    del self._done[next(iter(self._done))]
            self._done[key] = (now + self.ttl, value)
        return value


class ReadGate:
    """A budget of reads per second (a token bucket: `rate` a second, bursts of a quarter second's worth).

    `enter()` waits for the reader's turn and says True, or says False at once when that turn is more
    than `timeout` away (answer 503). Waiting costs nothing, so however many readers come, the process
    spends at most `rate` reads' worth of work a second on them and the rest on sending.
    """

    def __init__(self, rate: float, *, timeout: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.timeout = timeout
        self.clock = clock
        self.refused = 0
        self._burst = max(1.0, rate / 4) / rate if rate > 0 else 0.0  # seconds of credit
        self._next = 0.0  # when the bucket is next empty (theoretical arrival time of the next read)

    async def enter(self) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        start = max(self._next, now)
        wait = start - now - self._burst
        if wait > self.timeout:
            self.refused += 1
            return False
        self._next = start + 1 / self.rate
        if wait > 0:
            await asyncio.sleep(wait)
        return True


def _retrieve(task: asyncio.Task[Any]) -> None:
    # The error reached every caller that waited; this keeps asyncio from logging it once more.
    if not task.cancelled():
        task.exception()


def _responsible_json(found: tuple[str, str] | None) -> dict[str, str] | None:
    return {"contact_id": found[0], "role": found[1]} if found else None


def reach_csv(view: dict[str, Any]) -> str:
    """The reach view as one CSV, headers in the current language: a first column says what each row is
    (village, audience, unreached resident). Formula-like cells are escaped (`safe_cell`)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            t("类别", "section"),
            t("编号", "id"),
            t("名称", "name"),
            t("村", "village"),
            t("状态", "state"),
            t("人数", "total"),
            label("reach", "confirmed"),
            label("reach", "acknowledged"),
            label("reach", "notified"),
            label("reach", "pending"),
            t("负责人", "responsible"),
            t("负责人角色", "responsible role"),
            t("负责人编号", "responsible id"),
        ]
    )
    rows: list[list[Any]] = []
    names = {v["code"]: v["name"] for v in view["villages"]}
    for v in view["villages"]:
        resp = v["responsible"] or {}
        rows.append(
            [
                t("村", "village"),
                v["code"],
                v["name"],
                v["name"] or v["code"],
                "",
                v["must_reach_total"],
                v["confirmed"],
                v["acknowledged"],
                v["notified"],
                v["pending"],
                "",
                label("role", resp["role"]) if resp.get("role") else "",
                resp.get("contact_id", ""),
            ]
        )
    for name, c in view["audiences"].items():
        rows.append(
            [
                t("对象", "audience"),
                name,
                label("audience", name),
                "",
                "",
                c["total"],
                c["confirmed"],
                c["acknowledged"],
                c["notified"],
                c["pending"],
                "",
                "",
                "",
            ]
        )
    for u in view["unreached"]:
        resp = u["responsible"]
        rows.append(
            [
                t("未确认", "unreached"),
                u["resident_id"],
                u["name"],
                u.get("village_name") or names.get(u["village"], u["village"]),
                label("reach", u["state"]),
                "",
                "",
                "",
                "",
                "",
                resp["name"],
                label("role", resp["role"]) if resp["role"] else "",
                resp["contact_id"],
            ]
        )
    w.writerows([[safe_cell(v) for v in row] for row in rows])
    return out.getvalue()


# -- the after-action report ---------------------------------------------------------------------------


def _since(start: float | None, ts: float | None) -> float | None:
    return round(ts - start, 3) if start is not None and ts is not None else None


async def report(service: ReadModel, alert_id: str) -> dict[str, Any]:
    """The after-action (复盘) report: how long each stage took, per village and per cadre, every escalation.

    Raises:
        AlertNotFound: unknown id.
    """
    view = await reach_view(service, alert_id, limit=100_000)
    alert = await service.alerts.get(alert_id)
    counts = await service.reach.counts(alert.id)
    milestones = await service.reach.milestones(alert.id)
    start = milestones.get("issued")
    village_names = {v["code"]: v["name"] for v in view["villages"] if v["name"]}
    area_names = await service.area_names(alert.areas)
    villages = []
    for v in view["villages"]:
        villages.append(
            {
                "code": v["code"],
                "name": v["name"],
                "must_reach_total": v["must_reach_total"],
                "confirmed": v["confirmed"],
                "acknowledged": v["acknowledged"],
                "unreached": v["pending"] + v["notified"],
                "seconds_to_all_confirmed": _since(start, milestones.get(f"v:{v['code']}:must_100")),
                "residents_notified_or_better": v["residents"]["total"] - v["residents"]["pending"],
                "residents_total": v["residents"]["total"],
                "speakers_total": v["speakers"]["total"],
                "speakers_played": v["speakers"]["played"],
                "speakers_failed": v["speakers"]["failed"],
            }
        )
    cadres = []
    task_counts = await service.reach.cadres(alert.id)
    contacts = await _contacts(service, list(task_counts))
    for contact_id, total in sorted(task_counts.items()):
        scope = counts.scope(f"k:{contact_id}")
        contact = contacts.get(contact_id)
        cadres.append(
            {
                "contact_id": contact_id,
                "name": contact.name if contact else "",
                "role": contact.role.value if contact else "",
                "role_name": label("role", contact.role.value) if contact else "",
                "total": total,
                "confirmed": scope["confirmed"],
                "acknowledged": scope["acknowledged"],
                "unreached": scope["pending"] + scope["notified"],
                "seconds_to_all_confirmed": _since(start, milestones.get(f"k:{contact_id}:must_100")),
            }
        )
    return {
        "alert": {
            "id": alert.id,
            "event": alert.event,
            "level": alert.level.value,
            "areas": list(alert.areas),
            "state": alert.state.value,
            "exercise": alert.exercise,
            "version": alert.version,
            "issued_at": _iso(start),
            "expires": alert.expires.astimezone(BEIJING).isoformat() if alert.expires else None,
            "headline": alert.headline,
            "instruction": alert.instruction,
            "area_names": [area_names.get(code, code) for code in alert.areas],
            "level_name": label("level", alert.level.value),
            "state_name": label("state", alert.state.value),
        },
        "timings": {
            "seconds_to_first_message": _since(start, milestones.get("first_sent")),
            "seconds_to_90pct_machine_reach": _since(start, milestones.get("machine_90")),
            "seconds_to_all_must_reach_confirmed": _since(start, milestones.get("must_100")),
        },
        "must_reach": view["must_reach"],
        "residents": view["residents"],
        "channels": view["channels"],
        "villages": villages,
        "cadres": cadres,
        "escalations": [
            e | {"village_names": [village_names.get(code, code) for code in e["villages"]]}
            for e in view["escalations"]
        ],
        "unreached": view["unreached"],
        "confirmed": await _confirmed(service, alert.id, village_names),
        "texts": await _texts(service, alert),
    }


async def _confirmed(
    service: ReadModel, alert_id: str, village_names: dict[str, str]
) -> list[dict[str, Any]]:
    """Every must-reach resident confirmed (by a cadre, a keypress or themselves): who, with what outcome,
    by whom and when, in time order; read in pages of 1000 (HSCAN), never the whole hash at once."""
    rows: list[dict[str, Any]] = []
    key = service.reach.key(alert_id, "c")
    async for page in _hash_pages(service, key):
        residents = await service.directory.residents(list(page))
        # `by` is "contact:ID" (the cadre's page) or "voice:ID" (a keypress on the cadre's call).
        contacts = await _contacts(service, sorted({c.by.partition(":")[2] for c in page.values()}))
        for rid, confirmation in page.items():
            resident = residents.get(rid)
            contact = contacts.get(confirmation.by.partition(":")[2])
            village = resident.village if resident else ""
            rows.append(
                {
                    "resident_id": rid,
                    "name": resident.name if resident else "",
                    "village": village,
                    "village_name": village_names.get(village, village),
                    "outcome": confirmation.outcome,
                    "by": confirmation.by,
                    "by_name": contact.name if contact else "",
                    "by_keypad": confirmation.by.startswith("voice:"),
                    "at": _iso(confirmation.at),
                    "late": confirmation.late,
                    "note": confirmation.note,
                }
            )
    return sorted(rows, key=lambda r: r["at"] or "")


async def _hash_pages(service: ReadModel, key: str) -> AsyncIterator[dict[str, Confirmation]]:
    cursor = 0
    while True:
        cursor, found = await service.store.redis.hscan(key, cursor, count=1000)
        page: dict[Any, Any] = found  # type: ignore[assignment]  # redis-py types HSCAN's page loosely
        if page:
            yield {str(rid): Confirmation.from_json(raw) for rid, raw in page.items()}
        if not cursor:
            return


async def _texts(service: ReadModel, alert: Alert) -> list[dict[str, Any]]:
    """What was sent, per version × audience × channel × language, from the texts stored at issue."""
    out = []
    for version in range(1, alert.version + 1):
        for field_name, text in sorted((await service.texts.all(alert.id, version)).items()):
            audience, channel, language = [*field_name.split("|"), "", ""][:3]
            out.append(
                {
                    "version": version,
                    "audience": audience,
                    "channel": channel,
                    "language": language,
                    "text": text,
                }
            )
    return out


REPORT_SECTIONS = ("villages", "cadres", "escalations", "unreached", "confirmed", "texts")
_SHEETS = {
    "summary": ("概况", "summary"),
    "villages": ("各村", "villages"),
    "cadres": ("干部", "cadres"),
    "escalations": ("升级记录", "escalations"),
    "unreached": ("未确认人员", "unreached"),
    "confirmed": ("已确认人员", "confirmed"),
    "texts": ("发送文本", "texts"),
}
_PURPOSES = {
    "": ("预警", "warning"),
    "task": ("任务链接", "task link"),
    "spk": ("大喇叭失联通知", "silent loudspeaker notice"),
    "stop": ("停播", "stop"),
    "clear": ("解除通知", "all-clear"),
}
# Column → (zh-CN header, English header), per section; the order is the order in the sheet.
_COLUMNS: dict[str, dict[str, tuple[str, str]]] = {
    "villages": {
        "code": ("村代码", "village code"),
        "name": ("村名", "village"),
        "must_reach_total": ("必达人数", "must-reach"),
        "confirmed": ("干部已确认", "confirmed by cadre"),
        "acknowledged": ("本人已确认", "acknowledged"),
        "unreached": ("未确认", "unreached"),
        "seconds_to_all_confirmed": ("全部确认用时（秒）", "seconds to all confirmed"),
        "residents_notified_or_better": ("居民已通知", "residents notified"),
        "residents_total": ("居民总数", "residents"),
        "speakers_total": ("大喇叭数", "loudspeakers"),
        "speakers_played": ("大喇叭已播", "loudspeakers played"),
        "speakers_failed": ("大喇叭失败", "loudspeakers failed"),
    },
    "cadres": {
        "contact_id": ("编号", "id"),
        "name": ("姓名", "name"),
        "role_name": ("角色", "role"),
        "total": ("任务人数", "on list"),
        "confirmed": ("干部已确认", "confirmed by cadre"),
        "acknowledged": ("本人已确认", "acknowledged"),
        "unreached": ("未确认", "unreached"),
        "seconds_to_all_confirmed": ("全部确认用时（秒）", "seconds to all confirmed"),
    },
    "escalations": {
        "at_beijing": ("时间（北京时间）", "time (Beijing)"),
        "step_name": ("步骤", "step"),
        "role_name": ("角色", "role"),
        "name": ("姓名", "name"),
        "contact": ("编号", "id"),
        "village_names": ("涉及村", "villages"),
        "residents": ("涉及人数", "residents"),
        "detail": ("说明", "detail"),
    },
    "unreached": {
        "name": ("姓名", "name"),
        "resident_id": ("居民编号", "resident id"),
        "village_name": ("村名", "village"),
        "village": ("村代码", "village code"),
        "state_name": ("状态", "state"),
        "escalated_name": ("已上报", "escalated"),
        "responsible_name": ("负责人", "responsible"),
        "responsible_role_name": ("负责人角色", "responsible role"),
        "responsible_id": ("负责人编号", "responsible id"),
    },
    "confirmed": {
        "at_beijing": ("确认时间（北京时间）", "confirmed at (Beijing)"),
        "name": ("姓名", "name"),
        "resident_id": ("居民编号", "resident id"),
        "village_name": ("村名", "village"),
        "outcome_name": ("结果", "outcome"),
        "by_name": ("确认人", "confirmed by"),
        "how": ("方式", "how"),
        "late_name": ("超时", "late"),
        "note": ("备注", "note"),
    },
    "texts": {
        "version": ("版本", "version"),
        "audience_name": ("对象", "audience"),
        "channel_name": ("渠道", "channel"),
        "language": ("语言", "language"),
        "text": ("发送内容", "text sent"),
    },
}
# Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value` fit for a CSV/XLSX cell: a string that a spreadsheet would run as a formula gets a
    leading `'`; numbers (negative ones too) and None are kept as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def ledger_name(ledger: str, language: str | None = None) -> str:
    """`sms.esc0` → 短信（第1级升级）: a delivery ledger as people read it."""
    channel, _, purpose = ledger.partition(".")
    name = label("channel", channel, language)
    if purpose.startswith("esc") and purpose[3:].isdigit():
        what = t("第{n}级升级", "escalation step {n}", n=int(purpose[3:]) + 1)
    elif purpose in _PURPOSES:
        what = _PURPOSES[purpose][1 if _en(language) else 0]
    else:
        what = purpose
    return name if not purpose else t("{c}（{w}）", "{c} ({w})", c=name, w=what)


def _en(language: str | None) -> bool:
    return (language or current_language()) == "en"


def _h(pair: tuple[str, str], language: str | None = None) -> str:
    return pair[1] if _en(language) else pair[0]


def report_rows(data: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """The report as tables (sheet/section name → header row + rows), in the current language, for CSV
    and XLSX. Cells are not yet escaped (see `safe_cell`)."""
    a = data["alert"]
    tm = data["timings"]
    m = data["must_reach"]
    summary: list[list[Any]] = [
        [t("项目", "item"), t("值", "value")],
        [t("预警编号", "alert id"), a["id"]],
        [t("事件", "event"), a["event"]],
        [t("级别", "level"), label("level", a["level"])],
        [t("状态", "state"), label("state", a["state"])],
        [t("类型", "kind"), t("演练", "drill") if a["exercise"] else t("正式", "actual")],
        [t("版本", "version"), a["version"]],
        [t("区域", "areas"), "、".join(a.get("area_names") or a["areas"])],
        [t("标题", "headline"), a.get("headline", "")],
        [t("行动指引", "instruction"), a.get("instruction", "")],
        [t("发布时间（北京时间）", "issued (Beijing time)"), beijing(a["issued_at"], full=True)],
        [t("失效时间（北京时间）", "expires (Beijing time)"), beijing(a.get("expires"), full=True)],
        [t("首条消息用时（秒）", "seconds to first message"), tm["seconds_to_first_message"]],
        [t("90% 自动触达用时（秒）", "seconds to 90% machine reach"), tm["seconds_to_90pct_machine_reach"]],
        [
            t("必达人员全部确认用时（秒）", "seconds to all must-reach confirmed"),
            tm["seconds_to_all_must_reach_confirmed"],
        ],
        [t("必达人员总数", "must-reach total"), m["total"]],
        [label("reach", "confirmed"), m["confirmed"]],
        [label("reach", "acknowledged"), m["acknowledged"]],
        [label("reach", "notified"), m["notified"]],
        [label("reach", "pending"), m["pending"]],
        [label("reach", "escalated"), m["escalated"]],
        [t("超时回报", "reported late"), m["late"]],
        *[[t("回报：{o}", "outcome: {o}", o=label("outcome", k)), v] for k, v in m["outcomes"].items()],
        *[
            [f"{ledger_name(ledger)} {label('delivery', state)}", n]
            for ledger, c in data["channels"].items()
            for state, n in c.items()
        ],
    ]
    tables: dict[str, list[list[Any]]] = {_h(_SHEETS["summary"]): summary}
    for section in REPORT_SECTIONS:
        columns = _COLUMNS[section]
        rows = [_readable(section, r) for r in data.get(section, [])]
        tables[_h(_SHEETS[section])] = [
            [_h(pair) for pair in columns.values()],
            *[[r.get(key) for key in columns] for r in rows],
        ]
    return tables


def _readable(section: str, row: dict[str, Any]) -> dict[str, Any]:
    # The names a person reads, beside the machine values the JSON keeps.
    if section == "cadres":
        return row | {"role_name": label("role", row["role"])}
    if section == "escalations":
        step = row["step"]
        return row | {
            "at_beijing": beijing(row["at"], full=True),
            "step_name": t("大喇叭失联", "silent loudspeaker")
            if step == "spk"
            else t("第{n}级", "step {n}", n=int(step) + 1)
            if str(step).isdigit()
            else step,
            "role_name": label("role", row["role"]),
            "village_names": "、".join(row.get("village_names") or row["villages"]),
        }
    if section == "unreached":
        resp = row["responsible"]
        return row | {
            "state_name": label("reach", row["state"]),
            "escalated_name": t("是", "yes") if row["escalated"] else t("否", "no"),
            "responsible_name": resp["name"],
            "responsible_role_name": label("role", resp["role"]) if resp["role"] else "",
            "responsible_id": resp["contact_id"],
        }
    if section == "confirmed":
        return row | {
            "at_beijing": beijing(row["at"], full=True),
            "outcome_name": label("outcome", row["outcome"]),
            "how": t("电话按键", "keypad") if row["by_keypad"] else t("上门/网页", "in person / page"),
            "late_name": t("是", "yes") if row["late"] else t("否", "no"),
        }
    if section == "texts":
        return row | {
            "audience_name": label("audience", row["audience"]),
            "channel_name": label("channel", row["channel"]),
        }
    return row


def report_csv(data: dict[str, Any]) -> str:
    """The report as one CSV, a `# 表名` line before each table; formula-like cells are escaped."""
    out = io.StringIO()
    w = csv.writer(out)
    for name, rows in report_rows(data).items():
        w.writerow([f"# {name}"])
        w.writerows([[safe_cell(v) for v in row] for row in rows])
        w.writerow([])
    return out.getvalue()


_WIDEST = 80  # characters: the sent texts wrap beyond this instead of making the column endless


def _width(value: Any) -> int:
    # A CJK character takes two columns in Excel's default font.
    text = "" if value is None else str(value)
    return sum(2 if ord(ch) >= 0x2E80 else 1 for ch in text)


def report_xlsx(data: dict[str, Any]) -> bytes:
    """The report as a workbook: one sheet per table, bold frozen header row, columns as wide as their
    text; formula-like cells are escaped."""
    from openpyxl import Workbook  # imported here: only report writing needs it
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type,unused-ignore]
    bold = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    for name, rows in report_rows(data).items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(
                [safe_cell(v if isinstance(v, int | float | str) or v is None else str(v)) for v in row]
            )
        for cell in sheet[1]:
            cell.font = bold
        sheet.freeze_panes = "A2"
        for index, column in enumerate(sheet.iter_cols(values_only=True), start=1):
            widest = max((_width(v) for v in column), default=8)
            sheet.column_dimensions[get_column_letter(index)].width = min(_WIDEST, max(8, widest + 2))
            if widest > _WIDEST:
                for cell in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    cell[0].alignment = wrap
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
