"""The `warning` command: parse arguments, then run one command module (DESIGN §5.1).

This module imports nothing heavy: `warning --help` and every command start by parsing here, and only the
module of the command that runs is imported (redis, aiohttp, twilio, openpyxl… are loaded by the
commands that use them). Exit codes: 0 success, 2 usage or input error (one-line reason), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from warning import config as config_mod
from warning.audiences import DEFAULT_AUDIENCES
from warning.datadir import store_location
from warning.errors import AlertNotFound, UsageError, WarningError
from warning.i18n import set_language, t

log = logging.getLogger("warning.cli")

# Command (or "command subcommand") → the module that runs it. Each module has COMMANDS: name → function
# of (settings, args) returning the exit code (or a coroutine of it).
_MODULES = {
    "serve": "cli_service",
    "check-config": "cli_service",
    "demo": "cli_service",
    "sample": "cli_service",
    "directory": "cli_directory",
    "issue": "cli_broadcast",
    "approve": "cli_broadcast",
    "return": "cli_broadcast",
    "reject": "cli_broadcast",
    "cancel": "cli_broadcast",
    "status": "cli_status",
    "worker": "cli_broadcast",
    "deadletters": "cli_broadcast",
    "speaker-sim": "cli_broadcast",
    "feeds": "cli_broadcast",
    "report": "cli_reach",
    "alerts": "cli_admin",
    "users": "cli_admin",
    "audit": "cli_admin",
}
LEVELS_HELP = "red/orange/yellow/blue | 红色/橙色/黄色/蓝色"


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line reason, as every other input error does."""

    def error(self, message: str) -> Any:
        raise UsageError(t("参数错误：{m}（用 --help 查看用法）", "usage error: {m} (see --help)", m=message))


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--config and --lang; on subcommands they default to "not given", so either place works."""
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        help=t(
            "配置文件（默认 $WARNING_CONFIG、~/.config/warning/warning.toml 或 /etc/warning/warning.toml）",
            "config file (default $WARNING_CONFIG, ~/.config/warning/warning.toml or /etc/warning/warning.toml)",
        ),
    )
    parser.add_argument(
        "--lang", choices=("zh-CN", "en"), default=default, help=t("界面语言", "interface language")
    )


def _every_subparser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += [sub, *_every_subparser(sub)]
    return found


def _issue_parser(commands: Any) -> None:
    issue = commands.add_parser(
        "issue",
        help=t("发布预警（先预览，确认后发送）", "issue a warning (preview, then confirm)"),
        description=t(
            "先显示每类人群、每个渠道的预览（人数、发送的文字、短信条数），确认后才发送。正式预警和演练都必须有标题和行动指引。"
            "命令行是本机管理员的工具：直接发布，不经两人审批（审计记为 cli / admin）；网页控制台和 API 提交的高级别预警须另一人批准。",
            "Shows a preview per audience and channel (recipients, the text, SMS segments) and sends only "
            "once confirmed. Actual alerts and drills need a headline and an instruction. The CLI is the "
            "host administrator's tool: it issues directly, without the two-person approval (audited as "
            "cli, role admin); high-level alerts submitted through the console or the API wait for a "
            "second person's approval ([approval] level).",
        ),
    )
    issue.add_argument(
        "--cap",
        type=Path,
        help=t("从 CAP 1.2 文件发布、更新或撤销", "issue, update or cancel from a CAP 1.2 file"),
    )
    issue.add_argument("--event", help=t("事件，如 台风", "event, e.g. Typhoon"))
    issue.add_argument("--level", help=LEVELS_HELP)
    issue.add_argument("--area", help=t("区域代码，逗号分隔（6/9/12位）", "area codes, comma-separated"))
    issue.add_argument(
        "--headline", default="", help=t("标题（必填），如 台风今夜登陆", "headline (required)")
    )
    issue.add_argument("--description", default="", help=t("详情", "description"))
    issue.add_argument(
        "--instruction",
        default="",
        help=t("行动指引（必填），如 请立即转移到安全地带", "what people must do (required)"),
    )
    issue.add_argument(
        "--expires", help=t("失效时间（ISO 8601，带时区）", "expiry time (ISO 8601 with offset)")
    )
    issue.add_argument(
        "--audiences",
        default=",".join(DEFAULT_AUDIENCES),
        help=t(
            "人群，逗号分隔（默认 {d}）",
            "audiences, comma-separated (default {d})",
            d=",".join(DEFAULT_AUDIENCES),
        ),
    )
    issue.add_argument(
        "--id",
        default="",
        help=t(
            "指定编号（重复发布同一编号不会重复发送）",
            "alert id (re-issuing the same id sends nothing twice)",
        ),
    )
    issue.add_argument("--exercise", action="store_true", help=t("演练（消息带【演练】标记）", "a drill"))
    issue.add_argument(
        "--preview", action="store_true", help=t("只显示预览，不发送", "print the preview and send nothing")
    )
    issue.add_argument(
        "-y", "--yes", action="store_true", help=t("不询问，直接发送", "send without asking to confirm")
    )
    issue.add_argument(
        "--wait", action="store_true", help=t("等待发送完成并显示进度", "wait until sent, with progress")
    )


def _broadcast_parsers(commands: Any) -> None:
    _issue_parser(commands)
    approve = commands.add_parser(
        "approve",
        help=t(
            "批准待审批的预警或草稿并发布", "approve an alert waiting for approval (or a draft) and issue it"
        ),
    )
    approve.add_argument("id")
    for name, zh, en in (
        ("return", "退回待审批的预警供修改（成为草稿）", "return an alert waiting for approval for edit"),
        ("reject", "驳回待审批的预警或草稿（不会发布）", "reject an alert waiting for approval or a draft"),
    ):
        decide = commands.add_parser(name, help=t(zh, en))
        decide.add_argument("id")
        decide.add_argument(
            "--reason", required=True, help=t("理由（提交人会看到）", "the reason (the submitter sees it)")
        )

    cancel = commands.add_parser(
        "cancel",
        help=t(
            "撤销预警：停止发送，向已收到的人发解除通知，大喇叭播报解除",
            "cancel a warning: stop sending, send an all-clear to everyone who got it",
        ),
    )
    cancel.add_argument("id")
    cancel.add_argument(
        "--silent",
        action="store_true",
        help=t("只撤销，不发解除通知", "cancel without sending the all-clear"),
    )
    cancel.add_argument(
        "--note", default="", help=t("解除通知里附上的说明", "a note added to the all-clear message")
    )

    status = commands.add_parser("status", help=t("预警发送与叫应情况", "delivery and reach of a warning"))
    status.add_argument("id")
    status.add_argument("--json", action="store_true", help=t("输出 JSON", "print JSON"))

    worker = commands.add_parser("worker", help=t("只运行发送工作进程", "run workers only"))
    worker.add_argument("--channels", help="sms,voice,wechat,wecom,speaker")

    dead = commands.add_parser("deadletters", help=t("查看或重新排队死信", "list or requeue dead letters"))
    dead.add_argument("--requeue", action="store_true")
    dead.add_argument("--channel", help="sms | voice | wechat | wecom | speaker")

    feeds = commands.add_parser("feeds", help=t("预警源（CAP/Atom/RSS）", "warning feeds (CAP/Atom/RSS)"))
    feeds_commands = feeds.add_subparsers(dest="feeds_command", required=True, parser_class=_Parser)
    feeds_commands.add_parser(
        "poll", help=t("立即轮询所有配置的预警源一次", "poll every configured feed once")
    )

    sim = commands.add_parser("speaker-sim", help=t("模拟村村响大喇叭", "simulated loudspeakers"))
    sim.add_argument(
        "--count",
        type=int,
        default=0,
        help=t("数量（默认：名录中的全部）", "how many (default: all in the directory)"),
    )
    sim.add_argument("--village", default="", help=t("区域代码前缀", "area code prefix"))
    sim.add_argument("--fail-rate", type=float, default=0.0)

    rep = commands.add_parser("report", help=t("生成复盘报告", "write the after-action report"))
    rep.add_argument("id")
    rep.add_argument("--format", choices=("csv", "xlsx", "json"), default="xlsx")
    rep.add_argument(
        "--out",
        type=Path,
        help=t("输出文件（默认 report-编号.格式；- 为标准输出）", "output file (- for stdout)"),
    )


def _admin_parsers(commands: Any) -> None:
    alerts = commands.add_parser("alerts", help=t("最近的预警", "recent alerts"))
    alerts.add_argument(
        "--limit", type=int, default=20, help=t("显示条数（默认 20）", "how many (default 20)")
    )
    alerts.add_argument("--json", action="store_true", help=t("输出 JSON", "print JSON"))

    users = commands.add_parser("users", help=t("API 用户", "API users"))
    users_commands = users.add_subparsers(dest="users_command", required=True, parser_class=_Parser)
    add = users_commands.add_parser(
        "add", help=t("新建用户并显示其令牌（仅显示一次）", "create a user; prints the token once")
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, help="viewer | operator | approver | admin")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help=t(
            "从标准输入读取一行作为控制台登录密码（至少 10 个字符）",
            "read one line from stdin as the console password (at least 10 characters)",
        ),
    )
    users_commands.add_parser("list", help=t("列出用户及其角色", "list users and their roles"))
    revoke = users_commands.add_parser(
        "revoke",
        help=t("吊销用户的全部令牌、密码和登录会话", "revoke a user's tokens, password and sessions"),
    )
    revoke.add_argument("name")

    audit = commands.add_parser("audit", help=t("审计日志：校验与导出", "audit log: verify and export"))
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    verify = audit_commands.add_parser(
        "verify", help=t("校验审计日志的哈希链是否完整", "check the audit log's hash chain")
    )
    verify.add_argument("--quiet", action="store_true", help=t("不显示进度条", "no progress bar"))
    export = audit_commands.add_parser(
        "export", help=t("导出审计日志到标准输出", "export the audit log to stdout")
    )
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument(
        "--since", help=t("只导出此时间之后的（ISO 8601）", "only entries after this time (ISO 8601)")
    )
    export.add_argument(
        "--object",
        help=t("只导出关于此对象的（如预警编号）", "only entries about this object (e.g. an alert id)"),
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="warning",
        description=t(
            "多渠道预警发布服务：短信、推送、语音、村村响大喇叭，逐村逐人确认送达（预警叫应）。",
            "Multi-channel early-warning broadcast service: SMS, push, voice and village loudspeakers, "
            "with per-person reach.",
        ),
    )
    _global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve",
        help=t("启动服务（API、发送工作进程、定时任务）", "run the service (API, workers, scheduled jobs)"),
    )
    serve.add_argument(
        "--host", help=t("监听地址（默认 server.host）", "listen address (default server.host)")
    )
    serve.add_argument(
        "--port", type=int, help=t("监听端口（默认 server.port）", "listen port (default server.port)")
    )
    serve.add_argument(
        "--sample",
        action="store_true",
        help=t("名录为空时载入内置示例县", "load the bundled sample county if the directory is empty"),
    )
    commands.add_parser(
        "check-config",
        help=t(
            "检查并打印生效的配置（密钥已隐藏）",
            "validate and print the effective configuration (secrets hidden)",
        ),
    )

    directory = commands.add_parser("directory", help=t("名录：导入与统计", "directory: import and counts"))
    dir_commands = directory.add_subparsers(dest="directory_command", required=True, parser_class=_Parser)
    imp = dir_commands.add_parser(
        "import",
        help=t(
            "导入 CSV 或 XLSX 名录文件（按表头识别类型）",
            "import CSV or XLSX directory files (kind from the header)",
        ),
    )
    imp.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    imp.add_argument("--quiet", action="store_true", help=t("不显示进度条", "no progress bar"))
    stats = dir_commands.add_parser(
        "stats", help=t("按乡镇、村、标签统计", "counts per township, village and tag")
    )
    stats.add_argument("--json", action="store_true", help=t("输出 JSON", "print JSON"))

    _broadcast_parsers(commands)
    _admin_parsers(commands)

    demo = commands.add_parser(
        "demo",
        help=t(
            "完整的台风演练（内置 Redis、沙箱短信、模拟大喇叭）",
            "a complete typhoon drill on the embedded default",
        ),
    )
    demo.add_argument("--serve", action="store_true", help=t("演练后继续运行服务", "keep serving afterwards"))

    sample = commands.add_parser("sample", help=t("示例县与合成县", "sample and synthetic counties"))
    sample_commands = sample.add_subparsers(dest="sample_command", required=True, parser_class=_Parser)
    gen = sample_commands.add_parser(
        "generate", help=t("生成任意规模的合成县（CSV）", "generate a synthetic county of any size (CSV)")
    )
    gen.add_argument("--residents", type=int, required=True)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--out", type=Path, required=True)

    for sub in _every_subparser(parser):
        _global_options(sub, top=False)
    return parser


def _lang_from_argv(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _run(settings: config_mod.Settings, args: argparse.Namespace) -> int:
    module = importlib.import_module(f"warning.{_MODULES[args.command]}")
    outcome = module.COMMANDS[args.command](settings, args)
    return int(asyncio.run(outcome) if inspect.iscoroutine(outcome) else outcome)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `warning` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Help texts are built before parsing, so pick their language from --lang or the environment first.
    set_language(_lang_from_argv(argv) or config_mod.language_hint())
    settings: config_mod.Settings | None = None
    try:
        args = _parser().parse_args(argv)
        settings = config_mod.load_settings(args.config)
        set_language(args.lang or settings.ui.language)
        from warning.logs import configure_logging

        configure_logging(settings.log, quiet=args.command != "serve")
        return _run(settings, args)
    except AlertNotFound as exc:
        print(t("错误：{e}", "error: {e}", e=exc), file=sys.stderr)
        if settings is not None:
            print(_where_looked(settings), file=sys.stderr)
        return exc.exit_code
    except WarningError as exc:
        print(t("错误：{e}", "error: {e}", e=exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `warning directory stats | head`: the reader left; nothing to report
        # As the Python docs advise: point stdout at devnull so the flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:
        log.exception("unexpected error")
        print(
            t(
                "内部错误（详见上方日志），请报告此问题。",
                "internal error (see the log above); please report it.",
            ),
            file=sys.stderr,
        )
        return 1


def _where_looked(settings: config_mod.Settings) -> str:
    return t(
        "（查找位置：{w}；配置文件：{c}）",
        "(looked in {w}; config file: {c})",
        w=store_location(settings),
        c=settings.path or t("无", "none"),
    )
