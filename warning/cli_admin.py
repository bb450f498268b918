"""`warning alerts` (what was issued lately) and `warning users add|list|revoke` (API users)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from warning.alerts import AlertStore
from warning.config import Settings
from warning.datadir import require_data
from warning.errors import UsageError
from warning.i18n import t
from warning.labels import beijing, label
from warning.store import open_store
from warning.textable import render
from warning.users import UserRole, Users

_ROLE_NAMES = {
    UserRole.VIEWER: ("只读", "viewer"),
    UserRole.OPERATOR: ("值班员", "operator"),
    UserRole.APPROVER: ("审批人", "approver"),
    UserRole.ADMIN: ("管理员", "admin"),
}


async def _alerts(settings: Settings, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(t("--limit 至少为 1", "--limit must be at least 1"))
    require_data(settings)
    async with open_store(settings.redis, settings.data.dir) as store:
        alerts = await AlertStore(store.redis, store.keys).recent(limit=args.limit)
    if args.json:
        print(json.dumps([json.loads(a.to_json()) for a in alerts], ensure_ascii=False, indent=2))
        return 0
    if not alerts:
        print(t("还没有发布过预警。", "no alert has been issued yet."))
        return 0
    print(
        render(
            [
                t("编号", "id"),
                t("事件", "event"),
                t("级别", "level"),
                t("状态", "state"),
                t("类别", "kind"),
                t("发布时间（北京）", "sent (Beijing)"),
                t("失效时间", "expires"),
                t("区域", "areas"),
                t("标题", "headline"),
            ],
            [
                [
                    a.id,
                    a.event,
                    label("level", a.level.value),
                    label("state", a.state.value),
                    label("status", a.status.value),
                    beijing(a.sent),
                    beijing(a.expires) if a.expires else t("无", "none"),
                    ",".join(a.areas),
                    a.headline,
                ]
                for a in alerts
            ],
        )
    )
    return 0


async def _users(settings: Settings, args: argparse.Namespace) -> int:
    if args.users_command != "add":
        require_data(settings)
    async with open_store(settings.redis, settings.data.dir) as store:
        users = Users(store.redis, store.keys)
        audit = AlertStore(store.redis, store.keys).audit
        if args.users_command == "add":
            token = await users.add(args.name, args.role)
            await audit(actor="cli", role="admin", action="user.add", obj=args.name, result=args.role)
            print(token)
            print(
                t("请妥善保存此令牌，它只显示这一次。", "Keep this token safe: it is shown only once."),
                file=sys.stderr,
            )
            return 0
        if args.users_command == "revoke":
            revoked = await users.revoke(args.name)
            if not revoked:
                raise UsageError(
                    t(
                        "没有名为 {n} 的用户（warning users list 查看全部）",
                        "no user named {n} (see `warning users list`)",
                        n=args.name,
                    )
                )
            await audit(actor="cli", role="admin", action="user.revoke", obj=args.name, result="ok")
            print(
                t(
                    "已吊销 {n} 的 {k} 个令牌：立即失效。",
                    "revoked {k} token(s) of {n}: they stop working now.",
                    n=args.name,
                    k=revoked,
                )
            )
            return 0
        tokens = await users.tokens()
    if not tokens:
        print(
            t(
                "还没有用户：warning users add 姓名 --role operator",
                "no users yet: warning users add NAME --role operator",
            )
        )
        return 0
    print(
        render(
            [
                t("用户", "user"),
                t("角色", "role"),
                t("令牌", "token"),
                t("创建时间（北京）", "created (Beijing)"),
            ],
            [
                [
                    tok.user.name,
                    t(*_ROLE_NAMES[tok.user.role]),
                    tok.ref + "…",
                    beijing(datetime.fromtimestamp(tok.created, UTC)) if tok.created else "-",
                ]
                for tok in tokens
            ],
        )
    )
    return 0


COMMANDS = {"alerts": _alerts, "users": _users}
