"""`warning alerts` (what was issued lately), `warning users add|list|revoke` (users, their tokens and
console passwords) and `warning audit verify|export` (the hash-chained audit log)."""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import sys
from datetime import UTC, datetime

from warning.alerts import AlertStore
from warning.audit import AuditLog
from warning.broadcast import Broadcaster
from warning.config import Settings
from warning.datadir import require_data
from warning.errors import UsageError
from warning.i18n import t
from warning.labels import beijing, label
from warning.progress import ProgressBar
from warning.sessions import Sessions
from warning.store import open_store
from warning.textable import render
from warning.users import UserRole, Users, check_password
from warning.views import safe_cell

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
        # Waiting for a second person first, however old: an approver opening this list must see them.
        waiting = await Broadcaster(store, settings).pending_approvals()
        shown = {a.id for a in waiting}
        recent = await AlertStore(store.redis, store.keys).recent(limit=args.limit)
        alerts = waiting + [a for a in recent if a.id not in shown]
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


def _read_password() -> str:
    """The console password: one line from stdin, or — at a terminal — typed twice without echo. Checked
    here, so a bad one is exit 2 before anything is stored."""
    if not sys.stdin.isatty():
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    password = check_password(
        getpass.getpass(t("控制台密码（至少 10 个字符）：", "console password (10+ characters): "))
    )
    if getpass.getpass(t("再输入一次：", "again: ")) != password:
        raise UsageError(t("两次输入的密码不一致", "the two passwords differ"))
    return password


async def _users(settings: Settings, args: argparse.Namespace) -> int:
    if args.users_command != "add":
        require_data(settings)
    password = _read_password() if args.users_command == "add" and args.password_stdin else None
    async with open_store(settings.redis, settings.data.dir) as store:
        users = Users(store.redis, store.keys)
        audit = AlertStore(store.redis, store.keys, secret=settings.server.secret).audit
        if args.users_command == "add":
            token = await users.add(args.name, args.role, password=password)
            detail = "password set" if password is not None else ""
            await audit(
                actor="cli", role="admin", action="user.add", obj=args.name, result=args.role, detail=detail
            )
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
            ended = await Sessions(store.redis, store.keys).end_user(args.name.strip())
            await audit(
                actor="cli",
                role="admin",
                action="user.revoke",
                obj=args.name,
                result="ok",
                detail=f"{revoked} token(s), {ended} session(s)",
            )
            print(
                t(
                    "已吊销 {n} 的 {k} 个令牌和密码，结束 {s} 个登录会话：立即失效。",
                    "revoked {k} token(s) and the password of {n}, ended {s} session(s): they stop working now.",
                    n=args.name,
                    k=revoked,
                    s=ended,
                )
            )
            return 0
        accounts = await users.accounts()
    if not accounts:
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
                t("令牌数", "tokens"),
                t("控制台密码", "console password"),
                t("创建时间（北京）", "created (Beijing)"),
            ],
            [
                [
                    account.name,
                    t(*_ROLE_NAMES[account.role]),
                    str(account.tokens),
                    t("已设置", "set") if account.has_password else t("未设置", "not set"),
                    beijing(datetime.fromtimestamp(account.created, UTC)) if account.created else "-",
                ]
                for account in accounts
            ],
        )
    )
    return 0


AUDIT_COLUMNS = ("id", "seq", "ts", "actor", "role", "ip", "action", "object", "result", "detail", "hash")


async def _audit(settings: Settings, args: argparse.Namespace) -> int:
    require_data(settings)
    since = None
    if args.audit_command == "export" and args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            raise UsageError(
                t(
                    "--since 应为 ISO 8601 时间，如 2026-08-01T00:00:00+08:00",
                    "--since must be an ISO 8601 time",
                )
            ) from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    async with open_store(settings.redis, settings.data.dir) as store:
        log = AuditLog(store.redis, store.keys, secret=settings.server.secret)
        if args.audit_command == "verify":
            bar = ProgressBar(t("校验审计日志", "verifying the audit log"), enabled=not args.quiet)
            result = await log.verify(bar.update)
            bar.close()
            print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
            return 0 if result.ok else 1
        writer = csv.writer(sys.stdout) if args.format == "csv" else None
        if writer is not None:
            writer.writerow(AUDIT_COLUMNS)
        async for entry in log.scan(since=since, obj=args.object or ""):
            if writer is not None:
                writer.writerow([safe_cell(entry.get(c, "")) for c in AUDIT_COLUMNS])
            else:
                print(json.dumps({c: entry.get(c, "") for c in AUDIT_COLUMNS}, ensure_ascii=False))
    return 0


COMMANDS = {"alerts": _alerts, "users": _users, "audit": _audit}
