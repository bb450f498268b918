"""The console's live alert page and what a duty officer does from it.

    GET  /console/alerts/{id}               (read)   the live page, server-rendered, then kept live by live.js
    GET  /console/alerts/{id}/events        (read)   server-sent events: `snapshot` (the live_view JSON)
                                                      when it changed, `alive` {at, clock} when it did
                                                      not for a while, `end` once the alert is not issued
    POST /console/alerts/{id}/cancel        (cancel) note, silent; without confirmed=yes a confirm page
    POST /console/alerts/{id}/resend        (issue)  contact_id, click: one cadre's task link again
    POST /console/deadletters/requeue       (issue)  channel (and alert_id to come back to)
    GET  /console/alerts/{id}/report.xlsx|.csv (read) the after-action (复盘) report

Every action answers 303 back to the live page with a flash code in the query (`?done=…` / `?error=…`),
so a reload never repeats it. The snapshots are built through one short-lived shared cache: fifty
operators watching one alert cost one build a second, on the readers' own Redis pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any
from urllib.parse import quote

from aiohttp import web

from warning.channels.registry import REGISTRY
from warning.errors import AlertError, AlertNotFound, FieldError, RenderError
from warning.i18n import current_language, t
from warning.labels import label
from warning.live import live_view, signature
from warning.model import Alert
from warning.readmodel import ReadModel
from warning.render.words import CHINA_TIME
from warning.store.connection import ReadersBusy
from warning.users import User
from warning.views import ViewCache, report, report_csv, report_xlsx
from warning.web.access import requires
from warning.web.bodies import query_value, read_form
from warning.web.console_fleet import fleet_routes
from warning.web.keys import BROADCASTER, READ_MODEL
from warning.web.pages import PAGE_USER, render_page

log = logging.getLogger(__name__)

SNAPSHOT_TTL = 1.0  # seconds one built snapshot serves every viewer of the alert
EVENTS_MAX_SECONDS = 3600  # a stream ends after an hour; EventSource reconnects by itself
KEEPALIVE_SECONDS = 5
TICK = 1.0
NOTE_MAX = 500

Snapshot = tuple[dict[str, Any], str]


def _flash(code: str, n: str) -> str:
    """The message of a flash code (only known codes: the query cannot put words on the page)."""
    messages = {
        "cancelled": t("已撤销，解除通知已排队发送。", "Cancelled: the all-clear is queued."),
        "cancelled_silent": t(
            "已静默撤销（不发解除通知，大喇叭停播）。", "Cancelled silently (no all-clear)."
        ),
        "cancelled_again": t(
            "此预警此前已撤销，没有再发送任何消息。", "Already cancelled: nothing more was sent."
        ),
        "resent": t("已补发任务链接（{n} 条消息）。", "Task link resent ({n} messages).", n=n),
        "resent_again": t(
            "这次补发已经提交过，未重复发送。", "This resend was already done: nothing sent twice."
        ),
        "requeued": t("已重新排队 {n} 条死信。", "{n} dead-lettered deliveries requeued.", n=n),
        "not_issued": t("预警不在发布状态，无法执行。", "The alert is not issued: nothing was done."),
        "no_task": t("此人在本预警下没有任务清单。", "That person has no task list for this alert."),
        "bad_request": t("请求无效，请刷新页面再试。", "Invalid request: reload the page and try again."),
        "render": t(
            "解除通知模板有误，未撤销：请联系管理员。", "The all-clear template is broken: not cancelled."
        ),
    }
    return messages.get(code, "")


def _user(request: web.Request) -> User:
    user = request.get(PAGE_USER)
    if not isinstance(user, User):  # the access middleware refuses first; this keeps a bug from acting
        raise web.HTTPForbidden(text=t("请先登录", "sign in first"))
    return user


def _back(alert_id: str, **query: str) -> web.HTTPSeeOther:
    suffix = "&".join(f"{k}={quote(v)}" for k, v in query.items() if v)
    return web.HTTPSeeOther(f"/console/alerts/{quote(alert_id, safe='')}" + (f"?{suffix}" if suffix else ""))


def _readers(request: web.Request) -> ReadModel:
    return request.app[READ_MODEL] if READ_MODEL in request.app else request.app[BROADCASTER]


def _download_name(alert: Alert, suffix: str) -> str:
    """Content-Disposition with an ASCII fallback and the zh name (RFC 6266 / RFC 5987 `filename*`)."""
    plain = "".join(c if c.isalnum() or c in "-_." else "_" for c in alert.id)
    name = t("复盘报告-{e}-{i}.{s}", "after-action-report-{e}-{i}.{s}", e=alert.event, i=plain, s=suffix)
    return f"attachment; filename=\"report-{plain}.{suffix}\"; filename*=UTF-8''{quote(name, safe='')}"


def live_routes() -> list[web.AbstractRouteDef]:
    snapshots: ViewCache[Snapshot] = ViewCache(SNAPSHOT_TTL)

    async def snapshot(request: web.Request, alert_id: str) -> Snapshot:
        service = _readers(request)

        async def build() -> Snapshot:
            view = await live_view(service, alert_id)
            return view, signature(view)

        return await snapshots.get(("live", alert_id, current_language()), build)

    def changed(alert_id: str) -> None:
        snapshots.forget(lambda key: isinstance(key, tuple) and key[1] == alert_id)

    @requires("read")
    async def live_page(request: web.Request) -> web.Response:
        """The live page: reach per village, loudspeakers, next escalation step, unreached, actions."""
        alert_id = request.match_info["id"]
        try:
            view, _ = await snapshot(request, alert_id)
        except AlertNotFound:
            return render_page(
                request, "console/alert.html", status=404, title=t("未找到预警", "Alert not found"), view=None
            )
        user = _user(request)
        waiting = await request.app[BROADCASTER].proposal(alert_id)
        proposal = (
            {
                "who": waiting.actor,
                "at": waiting.at.astimezone(CHINA_TIME).strftime("%H:%M"),
                "level": label("level", str(waiting.request.get("level", ""))),
            }
            if waiting is not None
            else None
        )
        return render_page(
            request,
            "console/alert.html",
            title=f"{view['alert']['event']} · {view['alert']['level_name']}",
            proposal=proposal,
            view=view,
            flash=_flash(query_value(request, "done"), query_value(request, "n")),
            problem=_flash(query_value(request, "error"), ""),
            click=secrets.token_hex(8),
            may_cancel=user.may("cancel"),
            may_issue=user.may("issue"),
        )

    @requires("read")
    async def events(request: web.Request) -> web.StreamResponse:
        """Server-sent events: `snapshot` when the live view changed (at most once a second), `alive`
        every KEEPALIVE_SECONDS otherwise, `end` once the alert is no longer issued; an hour at most."""
        alert_id = request.match_info["id"]
        await _readers(request).alerts.get(alert_id)  # unknown: 404 before the stream starts
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        until = loop.time() + EVENTS_MAX_SECONDS
        last, quiet_since = "", loop.time()
        try:
            await response.write(b"retry: 3000\n\n")
            while loop.time() < until:
                try:
                    view, sig = await snapshot(request, alert_id)
                except ReadersBusy:
                    await asyncio.sleep(TICK)
                    continue
                if sig != last:
                    data = _dumps(view)
                    await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
                    last, quiet_since = sig, loop.time()
                elif loop.time() - quiet_since >= KEEPALIVE_SECONDS:
                    # Nothing changed: say so (the page shows the time it last heard), which keeps proxies open too.
                    alive = {"at": view["generated_at"], "clock": view["generated_beijing"]}
                    await response.write(f"event: alive\ndata: {_dumps(alive)}\n\n".encode())
                    quiet_since = loop.time()
                if view["alert"]["state"] != "issued":
                    await response.write(
                        f"event: end\ndata: {_dumps({'state': view['alert']['state']})}\n\n".encode()
                    )
                    break
                await asyncio.sleep(TICK)
        except ConnectionResetError:  # the viewer went away: nothing to answer, nothing to log
            pass
        return response

    @requires("cancel")
    async def cancel(request: web.Request) -> web.StreamResponse:
        """Cancel with the all-clear (or silently): first a confirm page, then — confirmed=yes — done."""
        alert_id = request.match_info["id"]
        user = _user(request)
        form = await read_form(request)
        note = form.get("note", "").strip()[:NOTE_MAX]
        silent = form.get("silent", "") in ("on", "1", "true", "yes")
        service = request.app[BROADCASTER]
        if form.get("confirmed") != "yes":
            try:
                view, _ = await snapshot(request, alert_id)
            except AlertNotFound:
                raise web.HTTPNotFound() from None
            if view["alert"]["state"] != "issued":
                raise _back(alert_id, error="not_issued")
            return render_page(
                request,
                "console/alert_cancel.html",
                title=t("确认撤销", "Confirm cancel"),
                view=view,
                note=note,
                silent=silent,
            )
        try:
            outcome = await service.cancel(
                alert_id, silent=silent, note=note, actor=user.name, role=user.role.value
            )
        except AlertNotFound:
            raise web.HTTPNotFound() from None
        except RenderError:
            log.exception("all-clear template broken", extra={"alert": alert_id})
            raise _back(alert_id, error="render") from None
        except AlertError:
            raise _back(alert_id, error="not_issued") from None
        changed(alert_id)
        done = "cancelled_again" if outcome.again else "cancelled_silent" if silent else "cancelled"
        raise _back(alert_id, done=done)

    @requires("issue")
    async def resend(request: web.Request) -> web.StreamResponse:
        """Send one cadre's task link again (once per click of the button)."""
        alert_id = request.match_info["id"]
        user = _user(request)
        form = await read_form(request)
        service = request.app[BROADCASTER]
        try:
            alert = await service.alerts.get(alert_id)
            queued = await service.tasks.resend_link(
                alert,
                form.get("contact_id", ""),
                click=form.get("click", ""),
                actor=user.name,
                role=user.role.value,
            )
        except AlertNotFound:
            raise web.HTTPNotFound() from None
        except FieldError as exc:
            raise _back(alert_id, error="no_task" if exc.field == "contact_id" else "bad_request") from None
        except AlertError:
            raise _back(alert_id, error="not_issued") from None
        changed(alert_id)
        if not queued:
            raise _back(alert_id, done="resent_again")
        raise _back(alert_id, done="resent", n=str(sum(queued.values())))

    @requires("issue")
    async def requeue(request: web.Request) -> web.StreamResponse:
        """Put a channel's dead letters back in its queue; back to the alert page the form came from."""
        user = _user(request)
        form = await read_form(request)
        channel, alert_id = form.get("channel", ""), form.get("alert_id", "")
        back = alert_id or ""
        if channel not in REGISTRY:
            if back:
                raise _back(back, error="bad_request")
            raise web.HTTPBadRequest(text=t("未知渠道", "unknown channel"))
        n = await request.app[BROADCASTER].requeue_dead(channel, actor=user.name, role=user.role.value)
        if back:
            changed(back)
            raise _back(back, done="requeued", n=str(n))
        raise web.HTTPSeeOther(f"/?done=requeued&n={n}")

    async def _report(request: web.Request, suffix: str) -> web.Response:
        service = _readers(request)
        alert_id = request.match_info["id"]
        try:
            alert = await service.alerts.get(alert_id)
        except AlertNotFound:
            raise web.HTTPNotFound() from None
        data = await report(service, alert_id)
        headers = {"Content-Disposition": _download_name(alert, suffix), "Cache-Control": "no-store"}
        if suffix == "xlsx":
            body = await asyncio.to_thread(report_xlsx, data)
            content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            return web.Response(body=body, content_type=content_type, headers=headers)
        # With a BOM, Excel on Windows opens the UTF-8 CSV with its Chinese intact.
        text = "\ufeff" + await asyncio.to_thread(report_csv, data)
        return web.Response(text=text, content_type="text/csv", charset="utf-8", headers=headers)

    @requires("read")
    async def report_xlsx_download(request: web.Request) -> web.Response:
        """The after-action report as a workbook."""
        return await _report(request, "xlsx")

    @requires("read")
    async def report_csv_download(request: web.Request) -> web.Response:
        """The after-action report as one CSV."""
        return await _report(request, "csv")

    return [
        web.get("/console/alerts/{id}/events", events),
        web.get("/console/alerts/{id}/report.xlsx", report_xlsx_download),
        web.get("/console/alerts/{id}/report.csv", report_csv_download),
        web.post("/console/alerts/{id}/cancel", cancel),
        web.post("/console/alerts/{id}/resend", resend),
        web.post("/console/deadletters/requeue", requeue),
        web.get("/console/alerts/{id:[^{}/]+}", live_page),
        *fleet_routes(),
    ]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
