"""`warning issue`'s preview and confirmation: what each audience will read, on which channel, how many.

The preview goes to stderr when the alert is then sent (stdout keeps the alert id for scripts), and to
stdout with `--preview`, where it is the command's output.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from warning.errors import UsageError
from warning.i18n import t
from warning.labels import beijing, label
from warning.preview import Preview
from warning.textable import render


def print_preview(preview: Preview, out: TextIO | None = None) -> None:
    """The alert's headline, then recipients per audience × channel, then every distinct text."""
    out = out or sys.stderr
    alert = preview.alert
    drill = t("【演练】", "[DRILL] ") if alert.exercise else ""
    print(
        t(
            "预览：{d}{e}{l}预警",
            "Preview: {d}{l} {e} warning",
            d=drill,
            e=alert.event,
            l=label("level", alert.level.value),
        ),
        file=out,
    )
    print(
        t(
            "区域：{a}　失效：{x}",
            "areas: {a}  expires: {x}",
            a="、".join(preview.area_names) or ",".join(alert.areas),
            x=beijing(alert.expires) if alert.expires else t("无", "none"),
        ),
        file=out,
    )
    rows = [
        [
            label("audience", row.audience),
            label("channel", row.channel),
            row.recipients,
            row.no_address,
            _segments(row.segments, row.encoding) if row.channel == "sms" else "-",
        ]
        for row in preview.rows
    ]
    print(
        render(
            [
                t("人群", "audience"),
                t("渠道", "channel"),
                t("人数", "recipients"),
                t("无号码", "no address"),
                t("短信条数", "SMS segments"),
            ],
            rows,
        ),
        file=out,
    )
    print(
        t(
            "合计 {n} 条消息发给 {p} 个对象（人或大喇叭），{m} 个没有可用号码/账号。",
            "{n} messages to {p} recipients (people or loudspeakers) in all; {m} have no usable address.",
            n=f"{sum(r.recipients for r in preview.rows):,}",
            p=f"{preview.people:,}",
            m=f"{sum(r.no_address for r in preview.rows):,}",
        ),
        file=out,
    )
    for text in preview.texts:
        heading = "、".join(f"{label('audience', a)} · {label('channel', c)}" for a, c in text.used_by)
        lang = t("中文", "Chinese") if text.language == "zh-CN" else t("英文", "English")
        print(f"\n【{heading} · {lang}】", file=out)
        print(text.text, file=out)


def _segments(count: int, encoding: str) -> str:
    return t("{n} 条（{e}）", "{n} ({e})", n=count, e=encoding)


async def confirm(question: str, *, exercise: bool) -> bool:
    """Ask on the terminal (or read one line from a pipe); True only for y/yes/是/确认.

    Raises:
        UsageError: stdin is closed or empty, so nobody can answer: says to add --yes.
    """
    kind = (
        t("演练", "drill") if exercise else t("正式预警，将发给真实的人", "an ACTUAL alert, to real people")
    )
    print(f"\n{question}（{kind}）[y/N] ", end="", file=sys.stderr, flush=True)
    answer = await asyncio.to_thread(sys.stdin.readline)
    if not answer:
        raise UsageError(
            t(
                "没有人确认发布（标准输入已关闭）：确认无误后加 --yes 发送，或先用 --preview 查看",
                "nobody confirmed (standard input is closed): add --yes to send, or look first with --preview",
            )
        )
    return answer.strip().lower() in ("y", "yes", "是", "确认", "发布")
