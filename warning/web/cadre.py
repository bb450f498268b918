"""Pages for people without an account, reached by a signed link: the cadre's task list and the
resident's confirm page. Plain HTML forms, no JavaScript, large touch targets, zh-CN first (`?lang=en`).

    GET  /c/{token}          the cadre's must-reach residents for one alert, each with outcome buttons
    POST /c/{token}/confirm  resident_id, outcome ∈ reached|evacuated|not_home|refused|needs_help, note?
    GET  /r/{token}          a resident's warning with an "I got it" button
    POST /r/{token}/ack

A token is bound to one purpose, one alert and one person, and expires with the alert: a forged or
foreign token, or a resident not on the cadre's list, is 403; an expired token or an ended alert is
410. Nothing changes on GET.

Every request is first admitted by the per-client `Throttle` (warning/web/throttle.py): over the limit,
or after too many invalid links in a minute, it is 429 with Retry-After. Refused attempts (403, 429)
are counted per client per minute and summarised in the audit stream once a minute at most; only a
refusal attributable to a real cadre (their own token, another's resident) is audited on its own.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from redis.exceptions import RedisError

from warning.evidence import ClosedTask, Evidence, ForbiddenTask
from warning.links import CADRE, RESIDENT, Claims, LinkError, hash_token
from warning.model import Alert, AlertState, Level, Resident
from warning.reach import OUTCOMES
from warning.render.words import CHINA_TIME, expires_text, level_name
from warning.web.access import public
from warning.web.bodies import read_form
from warning.web.throttle import FORBIDDEN, THROTTLED, Throttle, client_of, retry_after

log = logging.getLogger(__name__)

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(default=True),
)
_COLOURS = {Level.RED: "#c62828", Level.ORANGE: "#ef6c00", Level.YELLOW: "#f9a825", Level.BLUE: "#1565c0"}
_TAGS = {
    "zh-CN": {"elderly": "老人", "lives_alone": "独居", "no_smartphone": "无智能手机", "disabled": "残疾"},
    "en": {
        "elderly": "elderly",
        "lives_alone": "lives alone",
        "no_smartphone": "no smartphone",
        "disabled": "disabled",
    },
}
STRINGS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "叫应任务",
        "call": "拨打",
        "deadline": "请在此时间前逐一回报",
        "contact": "负责人",
        "progress": "已确认",
        "note": "备注（可选），如：已转移到村委会",
        "reached": "✔ 已当面告知",
        "evacuated": "✔ 已转移",
        "not_home": "不在家",
        "refused": "拒绝转移",
        "needs_help": "需要救助",
        "empty": "此预警下您没有需要确认的人员。",
        "late": "超时回报",
        "pending": "未确认",
        "notified": "已收到通知（未确认）",
        "acknowledged": "本人已确认收到",
        "confirmed": "已确认",
        "saved": "已记录：{name} — {outcome}",
        "forbidden": "无权操作：此人不在您的名单上，已记录。",
        "forbidden_title": "链接无效",
        "forbidden_text": "这个链接无效或不属于此预警，请使用短信或企业微信中收到的最新链接。",
        "gone_title": "预警已结束",
        "gone_text": "此预警已撤销或过期，链接已失效，无需再回报。",
        "throttled_title": "请稍后再试",
        "throttled_text": "此网络的访问过于频繁，请稍等片刻再打开链接。紧急情况请直接打电话。",
        "ack": "我已收到",
        "acked": "已记录，谢谢。请注意安全。",
        "bad_outcome": "请选择一个回报结果。",
        "instruction": "行动指引：",
        "expires": "有效至：",
        "duty_phone": "值班电话",
        "emergency": "紧急情况请拨打",
    },
    "en": {
        "title": "Check-in list",
        "call": "Call",
        "deadline": "Report each person before",
        "contact": "Responsible",
        "progress": "confirmed",
        "note": "Note (optional), e.g. moved to the village hall",
        "reached": "✔ Told in person",
        "evacuated": "✔ Evacuated",
        "not_home": "Not at home",
        "refused": "Refused to leave",
        "needs_help": "Needs help",
        "empty": "Nobody to confirm for this warning.",
        "late": "reported late",
        "pending": "not confirmed",
        "notified": "notified (not confirmed)",
        "acknowledged": "confirmed by themselves",
        "confirmed": "confirmed",
        "saved": "Saved: {name} — {outcome}",
        "forbidden": "Not allowed: this person is not on your list. This was recorded.",
        "forbidden_title": "Invalid link",
        "forbidden_text": "This link is invalid or not for this warning. Use the latest link you received.",
        "gone_title": "Warning over",
        "gone_text": "This warning was cancelled or has expired; the link no longer works.",
        "throttled_title": "Please try again shortly",
        "throttled_text": "Too many requests from this network. Wait a moment, then open the link again. "
        "In an emergency, phone instead.",
        "ack": "I got it",
        "acked": "Thank you. Stay safe.",
        "bad_outcome": "Choose one of the outcomes.",
        "instruction": "What to do: ",
        "expires": "Valid until: ",
        "duty_phone": "Duty phone",
        "emergency": "In an emergency call",
    },
}


def _lang(request: web.Request) -> str:
    return "en" if request.query.get("lang") == "en" else "zh-CN"


def _page(
    name: str, status: int = 200, headers: dict[str, str] | None = None, /, **context: Any
) -> web.Response:
    html = _TEMPLATES.get_template(name).render(**context)
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            **(headers or {}),
        },
    )


def _notice(lang: str, status: int, which: str, headers: dict[str, str] | None = None) -> web.Response:
    s = STRINGS[lang]
    return _page(
        "notice.html",
        status,
        headers,
        lang=lang,
        title=s[f"{which}_title"],
        text=s[f"{which}_text"],
        colour="#c62828",
    )


def _alert_title(alert: Alert, lang: str) -> str:
    mark = ("【演练】" if lang == "zh-CN" else "[DRILL] ") if alert.exercise else ""
    if lang == "en":
        return f"{mark}{level_name(alert.level, 'en')} {alert.event} warning"
    return f"{mark}{alert.event}{level_name(alert.level, 'zh-CN')}预警"


def _alert_facts(alert: Alert, lang: str, phone: str) -> dict[str, str]:
    # What every page shows beside the title: what to do, until when (Beijing time), whom to call.
    return {
        "instruction": alert.instruction,
        "expires": expires_text(alert.expires, lang),
        "phone": phone,
    }


def _ended(alert: Alert) -> bool:
    return alert.state is not AlertState.ISSUED or alert.expired_at(datetime.now(UTC))


def cadre_routes(
    evidence_key: web.AppKey[Evidence], throttle_key: web.AppKey[Throttle] | None = None
) -> list[web.RouteDef]:
    """The link pages; with `throttle_key` (a `Throttle` in the app), limited and counted per client."""

    def throttle_of(request: web.Request) -> Throttle | None:
        return request.app.get(throttle_key) if throttle_key is not None else None

    async def refused(request: web.Request, reason: str) -> None:
        throttle = throttle_of(request)
        if throttle is None:
            return
        try:
            await throttle.refuse(client_of(request.remote), reason)
        except RedisError as exc:
            log.warning("refused link attempt not counted: %s", exc)

    async def admitted(request: web.Request) -> web.Response | None:
        """None when the client may go on, else the 429 page (the refusal counted)."""
        throttle = throttle_of(request)
        if throttle is None:
            return None
        try:
            wait = await throttle.admit(client_of(request.remote))
        except RedisError as exc:  # the pages fail open: a warning must stay readable
            log.warning("link throttle unavailable, request admitted: %s", exc)
            return None
        if wait <= 0:
            return None
        await refused(request, THROTTLED)
        return _notice(_lang(request), 429, "throttled", {"Retry-After": retry_after(wait)})

    async def claims(request: web.Request, purpose: str) -> tuple[Claims, Alert] | web.Response:
        """The token's claims and live alert, or the 429/403/410 page to answer with."""
        ev = request.app[evidence_key]
        lang = _lang(request)
        token = request.match_info["token"]
        over = await admitted(request)
        if over is not None:
            return over
        try:
            claim = await ev.service.links.verify(token, purpose)
        except LinkError as exc:
            if exc.expired:
                return _notice(lang, 410, "gone")
            # Counted, not audited one by one: a guesser would fill the audit stream.
            await refused(request, FORBIDDEN)
            log.info(
                "invalid %s link refused",
                purpose,
                extra={"link": hash_token(token), "client": client_of(request.remote), "reason": str(exc)},
            )
            return _notice(lang, 403, "forbidden")
        alert = await ev.service.alerts.find(claim.alert_id)
        if alert is None:
            await refused(request, FORBIDDEN)
            return _notice(lang, 403, "forbidden")
        if _ended(alert):
            return _notice(lang, 410, "gone")
        return claim, alert

    async def cadre_page(
        request: web.Request, message: str = "", error: bool = False, status: int = 200
    ) -> web.Response:
        found = await claims(request, CADRE)
        if isinstance(found, web.Response):
            return found
        claim, alert = found
        ev = request.app[evidence_key]
        lang = _lang(request)
        s = STRINGS[lang]
        contact = await ev.service.directory.contact(claim.subject)
        if contact is None:
            return _notice(lang, 403, "forbidden")
        ids = await ev.residents_of(alert.id, contact.id)
        people = [await ev.service.directory.resident(rid) for rid in ids]
        entries = {e.resident: e for e in await ev.reach.entries(alert.id, ids)}
        confirmations = await ev.reach.confirmations(alert.id, ids)
        villages = {
            v.code: v.name
            for v in await ev.service.directory.villages(sorted({e.village for e in entries.values()}))
        }
        rows = []
        for rid, person in zip(ids, people, strict=True):
            entry = entries.get(rid)
            confirmation = confirmations.get(rid)
            state = s[entry.state] if entry else s["pending"]
            if confirmation is not None:
                state = f"{s['confirmed']}：{s[confirmation.outcome]}" + (
                    f"（{confirmation.note}）" if confirmation.note else ""
                )
            rows.append(
                {
                    "id": rid,
                    "name": person.name if person else rid,
                    "village": villages.get(entry.village, entry.village) if entry else "",
                    "tags": "、".join(_TAGS[lang][t] for t in sorted(person.tags) if t in _TAGS[lang])
                    if person
                    else "",
                    "phone": person.phone if person else "",
                    "state": state,
                    "done": bool(entry and entry.done),
                    "late": bool(confirmation and confirmation.late),
                }
            )
        rows.sort(key=lambda r: (r["done"], r["village"], r["name"]))
        deadline = datetime.fromtimestamp(await ev.service.tasks.deadline(alert), CHINA_TIME)
        suffix = "?lang=en" if lang == "en" else ""
        return _page(
            "cadre.html",
            status,
            lang=lang,
            s=s,
            title=s["title"],
            colour=_COLOURS[alert.level],
            alert_title=_alert_title(alert, lang),
            headline=alert.headline,
            deadline=deadline.strftime("%m-%d %H:%M"),
            contact=contact,
            residents=rows,
            done=sum(1 for r in rows if r["done"]),
            total=len(rows),
            action=f"/c/{request.match_info['token']}/confirm{suffix}",
            alert_id=alert.id,
            message=message,
            error=error,
            **_alert_facts(alert, lang, ev.service.settings.bureau.phone),
        )

    @public
    async def cadre_get(request: web.Request) -> web.Response:
        return await cadre_page(request)

    @public
    async def cadre_confirm(request: web.Request) -> web.Response:
        found = await claims(request, CADRE)
        if isinstance(found, web.Response):
            return found
        claim, alert = found
        ev = request.app[evidence_key]
        lang = _lang(request)
        form = await read_form(request)
        resident = str(form.get("resident_id", ""))
        outcome = str(form.get("outcome", ""))
        note = str(form.get("note", "")).strip()
        if str(form.get("alert_id", alert.id)) != alert.id:
            await ev.service.alerts.audit(
                actor=f"contact:{claim.subject}",
                role="cadre",
                action="confirm",
                obj=alert.id,
                result="forbidden",
                detail=f"{resident} token of another alert",
            )
            await refused(request, FORBIDDEN)
            return await cadre_page(request, STRINGS[lang]["forbidden"], error=True, status=403)
        if outcome not in OUTCOMES:
            return await cadre_page(request, STRINGS[lang]["bad_outcome"], error=True, status=400)
        try:
            await ev.confirm(alert, f"contact:{claim.subject}", claim.subject, resident, outcome, note)
        except ForbiddenTask:
            await refused(request, FORBIDDEN)
            return await cadre_page(request, STRINGS[lang]["forbidden"], error=True, status=403)
        except ClosedTask:
            return _notice(lang, 410, "gone")
        person: Resident | None = await ev.service.directory.resident(resident)
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response({"resident_id": resident, "outcome": outcome, "alert_id": alert.id})
        log.info("cadre confirmation", extra={"alert": alert.id, "resident": resident, "outcome": outcome})
        message = STRINGS[lang]["saved"].format(
            name=person.name if person else resident, outcome=STRINGS[lang][outcome]
        )
        return await cadre_page(request, message)

    async def resident_page(request: web.Request, message: str = "") -> web.Response:
        found = await claims(request, RESIDENT)
        if isinstance(found, web.Response):
            return found
        claim, alert = found
        ev = request.app[evidence_key]
        lang = _lang(request)
        person = await ev.service.directory.resident(claim.subject)
        audience = await ev.reach.entry(alert.id, claim.subject)
        text = (
            await ev.service.texts.get(
                alert.id, alert.version, audience.audience if audience else "public", "wechat", lang
            )
            or alert.headline
        )
        suffix = "?lang=en" if lang == "en" else ""
        return _page(
            "resident.html",
            200,
            lang=lang,
            s=STRINGS[lang],
            title=_alert_title(alert, lang),
            colour=_COLOURS[alert.level],
            alert_title=_alert_title(alert, lang) + (f" · {person.name}" if person else ""),
            text=text,
            action=f"/r/{request.match_info['token']}/ack{suffix}",
            message=message,
            **_alert_facts(alert, lang, ev.service.settings.bureau.phone),
        )

    @public
    async def resident_get(request: web.Request) -> web.Response:
        return await resident_page(request)

    @public
    async def resident_ack(request: web.Request) -> web.Response:
        found = await claims(request, RESIDENT)
        if isinstance(found, web.Response):
            return found
        claim, alert = found
        try:
            await request.app[evidence_key].resident_ack(alert, claim.subject)
        except ClosedTask:
            return _notice(_lang(request), 410, "gone")
        return await resident_page(request, STRINGS[_lang(request)]["acked"])

    return [
        web.get("/c/{token}", cadre_get),
        web.post("/c/{token}/confirm", cadre_confirm),
        web.get("/r/{token}", resident_get),
        web.post("/r/{token}/ack", resident_ack),
    ]
