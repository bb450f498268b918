"""`warning status` (reach part) and `warning report`: the reach of an alert in the terminal, and the
after-action (复盘) report as CSV, XLSX or JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from warning.config import Settings
from warning.datadir import require_data
from warning.i18n import t
from warning.labels import label
from warning.readmodel import ReadModel
from warning.store import open_store
from warning.textable import render
from warning.views import report, report_csv, report_xlsx

UNREACHED_SHOWN = 30


def print_reach(view: dict[str, Any]) -> None:
    """The reach view as a few lines and two tables."""
    m = view["must_reach"]
    print(
        t(
            "必达人员 {total} 人：村干部确认 {c}，本人确认 {a}，已通知未确认 {n}，未通知 {p}；"
            "其中已升级 {e} 人，超时回报 {late} 人",
            "must-reach {total}: confirmed by cadre {c}, acknowledged {a}, notified only {n}, pending {p}; "
            "escalated {e}, reported late {late}",
            total=m["total"],
            c=m["confirmed"],
            a=m["acknowledged"],
            n=m["notified"],
            p=m["pending"],
            e=m["escalated"],
            late=m["late"],
        )
    )
    needs = m["outcomes"].get("needs_help", 0)
    if needs:
        print(t("！需要救助：{n} 人（见回报结果）", "! needs help: {n} (see outcomes)", n=needs))
    # The person each village's open residents were escalated to, by name (the unreached rows carry them).
    contacts = {
        u["responsible"]["contact_id"]: u["responsible"]["name"]
        for u in view["unreached"]
        if u["responsible"]["name"]
    }
    rows = [
        [
            v["name"] or v["code"],
            v["code"],
            f"{v['confirmed'] + v['acknowledged']}/{v['must_reach_total']}",
            v["notified"] + v["pending"],
            f"{v['residents']['total'] - v['residents']['pending']}/{v['residents']['total']}",
            f"{v['speakers']['played']}/{v['speakers']['total']}",
            _escalated_to(v["responsible"], contacts),
        ]
        for v in view["villages"]
        if v["must_reach_total"] or v["residents"]["total"] or v["speakers"]["total"]
    ]
    print(
        render(
            [
                t("村", "village"),
                t("村代码", "code"),
                t("必达已确认", "must-reach done"),
                t("未确认", "open"),
                t("居民已通知", "residents notified"),
                t("大喇叭已播", "speakers played"),
                t("已升级至", "escalated to"),
            ],
            rows,
        )
    )
    unreached = view["unreached"]
    if unreached:
        print(
            t(
                "未确认的必达人员（前 {n} 名）：",
                "unreached must-reach residents (first {n}):",
                n=UNREACHED_SHOWN,
            )
        )
        print(
            render(
                [
                    t("姓名", "name"),
                    t("编号", "id"),
                    t("村", "village"),
                    t("状态", "state"),
                    t("负责人", "responsible"),
                    t("角色", "role"),
                ],
                [
                    [
                        u["name"] or u["resident_id"],
                        u["resident_id"],
                        u["village_name"] or u["village"],
                        label("reach", u["state"])
                        + (t("（已上报）", " (escalated)") if u.get("escalated") else ""),
                        u["responsible"]["name"] or u["responsible"]["contact_id"],
                        label("role", u["responsible"]["role"]) if u["responsible"]["role"] else "",
                    ]
                    for u in unreached[:UNREACHED_SHOWN]
                ],
            )
        )


def _escalated_to(found: dict[str, str] | None, names: dict[str, str]) -> str:
    if not found:
        return ""
    who = names.get(found["contact_id"], found["contact_id"])
    return f"{label('role', found['role'])} {who}" if found.get("role") else who


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    require_data(settings)
    async with open_store(settings.redis, settings.data.dir) as store:
        data = await report(ReadModel(store, settings), args.id)
    out: Path = args.out or Path(f"report-{args.id}.{args.format}")
    if args.format == "json":
        body: bytes = json.dumps(data, ensure_ascii=False, indent=2).encode()
    elif args.format == "csv":
        body = report_csv(data).encode("utf-8-sig")  # the BOM makes Excel read the Chinese right
    else:
        body = await asyncio.to_thread(report_xlsx, data)
    if str(out) == "-":
        print(body.decode("utf-8-sig") if args.format != "xlsx" else "", end="")
        return 0
    await asyncio.to_thread(out.write_bytes, body)
    print(t("复盘报告已写入 {p}", "report written to {p}", p=out))
    return 0


COMMANDS = {"report": _report}
