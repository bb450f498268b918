"""The public page of an issued warning, `GET /alerts/{id}` (no login): the official text, every update
and the all-clear, for sharing in WeChat so that official word arrives before rumours.

Only Actual alerts that went out (issued, cancelled, expired) have one; drills, drafts, pending and
rejected alerts and unknown ids are the same 404, so the page tells nobody which ids exist. Nothing
personal is shown: the texts are those of the public audiences, never a cadre's task or a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from warning.fanout import ALL_CLEAR
from warning.i18n import current_language, t
from warning.labels import beijing, label
from warning.model import Alert, AlertState, AlertStatus
from warning.views import ViewCache
from warning.web.access import public
from warning.web.keys import BROADCASTER, READ_MODEL
from warning.web.pages import render_page

PUBLIC_STATES = frozenset({AlertState.ISSUED, AlertState.CANCELLED, AlertState.EXPIRED})
CACHE_SECONDS = 30  # browsers and WeChat's proxy may keep the page this long
BUILD_TTL = 5.0  # a crowd opening one shared link costs one build every few seconds
# Whose texts the public may read, most readable first (cadres' and officials' texts are internal).
PUBLIC_TEXTS = (("public", "wechat"), ("public", "sms"), ("speakers", "speaker"), ("vulnerable", "sms"))
SHARE_TEXT_MAX = 120


@dataclass(frozen=True)
class Version:
    """An earlier (or the all-clear) message as it went out, and when."""

    number: int
    text: str
    at: datetime | None


@dataclass(frozen=True)
class PublicAlert:
    alert: Alert
    area_names: str
    first_issued: datetime
    earlier: tuple[Version, ...]
    all_clear: Version | None


def _shown(alert: Alert | None) -> bool:
    return alert is not None and alert.status is AlertStatus.ACTUAL and alert.state in PUBLIC_STATES


def _public_text(texts: dict[str, str], audiences: tuple[tuple[str, str], ...], language: str) -> str:
    for audience, channel in audiences:
        for lang in dict.fromkeys((language, "zh-CN")):
            text = texts.get(f"{audience}|{channel}|{lang}", "")
            if text:
                return text
    return ""


def _nth(times: list[datetime], index: int) -> datetime | None:
    try:
        return times[index]
    except IndexError:
        return None


async def _public_alert(request: web.Request, alert: Alert) -> PublicAlert:
    model, language = request.app[READ_MODEL], current_language()
    moves = await request.app[BROADCASTER].moves(alert.id)
    issued = [m.at for m in moves if m.action in ("issue", "approve")]
    updated = [m.at for m in moves if m.action == "update"]
    cancelled = [m.at for m in moves if m.action == "cancel"]
    earlier = []
    for number in range(1, alert.version):
        texts = await model.texts.all(alert.id, number)
        # Version 1 went out with the issue (or the approval); version n with the (n-1)th update.
        at = _nth(issued, 0) if number == 1 else _nth(updated, number - 2)
        earlier.append(Version(number, _public_text(texts, PUBLIC_TEXTS, language), at))
    all_clear = None
    if alert.state is AlertState.CANCELLED:
        current = await model.texts.all(alert.id, alert.version)
        clear_texts = tuple((ALL_CLEAR, channel) for channel in ("wechat", "sms", "speaker", "voice"))
        text = _public_text(current, clear_texts, language)
        all_clear = Version(alert.version, text, _nth(cancelled, -1))
    names = await model.area_names(alert.areas)
    return PublicAlert(
        alert=alert,
        area_names="、".join(names.values()),
        first_issued=issued[0] if issued else alert.sent,
        earlier=tuple(reversed(earlier)),
        all_clear=all_clear,
    )


def _not_found(request: web.Request) -> web.Response:
    return render_page(
        request, "public/alert.html", status=404, title=t("没有这条预警", "No such warning"), page=None
    )


def public_routes() -> list[web.AbstractRouteDef]:
    pages: ViewCache[PublicAlert | None] = ViewCache(BUILD_TTL, max_entries=256)

    @public
    async def alert_page(request: web.Request) -> web.Response:
        """The public page of one Actual alert that went out; 404 for anything else."""
        alert_id = request.match_info["id"]

        async def build() -> PublicAlert | None:
            alert = await request.app[READ_MODEL].alerts.find(alert_id)
            return await _public_alert(request, alert) if alert is not None and _shown(alert) else None

        page = await pages.get((alert_id, current_language()), build)
        if page is None:
            return _not_found(request)
        settings = request.app[BROADCASTER].settings
        alert = page.alert
        level = label("level", alert.level.value)
        share: dict[str, Any] = {
            "title": t(
                "【{level}预警】{event} · {bureau}",
                "[{level} warning] {event} · {bureau}",
                level=level,
                event=alert.event,
                bureau=settings.bureau.name,
            ),
            "description": f"{alert.headline} {alert.instruction}".strip()[:SHARE_TEXT_MAX],
            "url": f"{settings.server.base_url}/alerts/{quote(alert.id)}",
        }
        response = render_page(
            request,
            "public/alert.html",
            title=share["title"],
            page=page,
            share=share,
            bureau=settings.bureau,
            level=level,
            label=label,
            beijing=beijing,
            cap_url=f"/api/v1/alerts/{quote(alert.id)}/cap",
        )
        response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
        response.headers["Vary"] = "Cookie"
        return response

    return [web.get("/alerts/{id}", alert_page)]
