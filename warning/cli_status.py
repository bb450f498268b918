"""`warning status ID`: an alert's deliveries per channel and state, then its reach per village.

Kept apart from the other broadcast commands so that it loads only what reading needs (no provider
clients, no web stack): an operator runs it again and again through the night.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from warning.cli_reach import print_reach
from warning.config import Settings
from warning.datadir import require_data
from warning.deliveries import ChannelCounts
from warning.i18n import t
from warning.labels import beijing, label
from warning.readmodel import ReadModel, counts_json
from warning.store import open_store
from warning.textable import render
from warning.views import reach_view

# Columns of the status table, in the order a delivery moves.
STATUS_COLUMNS = (
    "queued",
    "retrying",
    "sending",
    "sent",
    "delivered",
    "failed",
    "ambiguous",
    "expired",
    "cancelled",
    "dead",
    "no_address",
)


def print_counts(counts: dict[str, ChannelCounts]) -> None:
    """Deliveries per channel and state, as a table."""
    header = [t("渠道", "channel")] + [label("delivery", c) for c in STATUS_COLUMNS]
    rows = [
        [label("channel", channel)] + [c.get(col) for col in STATUS_COLUMNS]
        for channel, c in counts.items()
        if c.counts
    ]
    print(render(header, rows) if rows else t("（还没有任何投递）", "(no deliveries yet)"))


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    require_data(settings)
    async with open_store(settings.redis, settings.data.dir) as store:
        service = ReadModel(store, settings)
        alert, counts = await service.status(args.id)
        view = await reach_view(service, args.id)
    if args.json:
        print(
            json.dumps(
                {"alert": json.loads(alert.to_json()), "deliveries": counts_json(counts), "reach": view},
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    drill = t("【演练】", "[DRILL] ") if alert.exercise else ""
    print(f"{drill}{alert.event}{label('level', alert.level.value)}{t('预警', ' warning')}  {alert.id}")
    print(
        t(
            "状态：{s}　发布：{at}　失效：{e}　区域：{a}",
            "state: {s}  sent: {at}  expires: {e}  areas: {a}",
            s=label("state", alert.state.value),
            at=beijing(alert.sent),
            e=beijing(alert.expires) if alert.expires else t("无", "none"),
            a=_areas(view),
        )
    )
    if alert.headline:
        print(t("标题：{h}", "headline: {h}", h=alert.headline))
    if alert.instruction:
        print(t("行动指引：{i}", "instruction: {i}", i=alert.instruction))
    print()
    print_counts(counts)
    print()
    print_reach(view)
    return 0


def _areas(view: dict[str, Any]) -> str:
    """The villages by name (a long list shortened to its first few and a count)."""
    names = [v["name"] or v["code"] for v in view["villages"]]
    if len(names) <= 6:
        return "、".join(names)
    return t(
        "{n} 等 {c} 个村",
        "{n} and {more} more villages",
        n="、".join(names[:5]),
        c=len(names),
        more=len(names) - 5,
    )


COMMANDS = {"status": _status}
