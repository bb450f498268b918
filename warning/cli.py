"""The `warning` command: parse arguments, call a service, print the outcome (DESIGN §5.1).

Exit codes: 0 success, 2 usage or input error (one-line reason), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from warning import cli_broadcast
from warning import config as config_mod
from warning.directory.importer import ImportReport, import_files
from warning.directory.rows import RowProblem
from warning.directory.store import Directory, DirectoryStats
from warning.errors import UsageError, WarningError
from warning.i18n import set_language, t
from warning.logs import configure_logging
from warning.model import Kind
from warning.progress import ProgressBar
from warning.store import open_store
from warning.textable import render

log = logging.getLogger("warning.cli")

_KIND_NAMES = {
    Kind.VILLAGES: ("村庄", "villages"),
    Kind.RESIDENTS: ("居民", "residents"),
    Kind.CONTACTS: ("联系人", "contacts"),
    Kind.SPEAKERS: ("大喇叭", "loudspeakers"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line reason, as every other input error does."""

    def error(self, message: str) -> Any:
        raise UsageError(t("参数错误：{m}（用 --help 查看用法）", "usage error: {m} (see --help)", m=message))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="warning",
        description=t(
            "多渠道预警发布服务：短信、推送、语音、村村响大喇叭，逐村逐人确认送达（预警叫应）。",
            "Multi-channel early-warning broadcast service: SMS, push, voice and village loudspeakers, "
            "with per-person reach.",
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=t(
            "配置文件（默认 config/warning.toml 或 $WARNING_CONFIG）",
            "config file (default config/warning.toml or $WARNING_CONFIG)",
        ),
    )
    parser.add_argument("--lang", choices=("zh-CN", "en"), help=t("界面语言", "interface language"))
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

    cli_broadcast.add_parsers(commands)

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
    return parser


# -- commands --------------------------------------------------------------------------------------


def _cmd_serve(settings: config_mod.Settings, args: argparse.Namespace) -> int:
    from warning.web.app import serve  # the web stack is only imported by the commands that serve

    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    asyncio.run(serve(settings, host=host, port=port, load_sample=args.sample))
    return 0


def _cmd_check_config(settings: config_mod.Settings, args: argparse.Namespace) -> int:
    source = (
        str(settings.path)
        if settings.path
        else t("无（全部为默认值与环境变量）", "none (defaults and environment)")
    )
    print(t("# 配置文件：{s}", "# config file: {s}", s=source))
    section = None
    for name, key, value, origin in config_mod.effective(settings):
        if name != section:
            print(f"\n[{name}]")
            section = name
        shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value).lower()
        note = t("默认", "default") if origin == "default" else origin
        print(f"{key} = {shown}  # {note}")
    notes = []
    if not settings.redis.url:
        notes.append(
            t(
                "redis.url 未设置：使用内置 Redis，数据在 {d}",
                "redis.url unset: embedded Redis, data in {d}",
                d=settings.data.dir / "redis",
            )
        )
    if not settings.mqtt.url:
        notes.append(
            t(
                "mqtt.url 未设置：使用内置 MQTT 代理 {h}:{p}",
                "mqtt.url unset: embedded MQTT broker on {h}:{p}",
                h=settings.mqtt.embedded_host,
                p=settings.mqtt.embedded_port,
            )
        )
    if notes:
        print()
        for note in notes:
            print("# " + note)
    return 0


def _print_problem(problem: RowProblem) -> None:
    print(str(problem), file=sys.stderr)


def _print_import_report(report: ImportReport) -> None:
    rows = []
    for table in report.tables:
        zh, en = _KIND_NAMES[table.kind]
        rows.append(
            [
                table.source,
                t(zh, en),
                table.rows,
                table.created,
                table.updated,
                table.unchanged,
                table.errors,
                table.warnings,
            ]
        )
    header = [
        t("文件", "file"),
        t("类型", "kind"),
        t("行数", "rows"),
        t("新增", "created"),
        t("更新", "updated"),
        t("未变", "unchanged"),
        t("错误", "errors"),
        t("警告", "warnings"),
    ]
    if rows:
        print(render(header, rows))
    for message in report.bad_files:
        print(t("未导入：{m}", "not imported: {m}", m=message), file=sys.stderr)


async def _directory_import(settings: config_mod.Settings, paths: Sequence[Path], quiet: bool) -> int:
    bars: dict[str, ProgressBar] = {}

    def progress(source: str, done: int, total: int | None) -> None:
        if source not in bars:
            for bar in bars.values():
                bar.close()
            bars[source] = ProgressBar(source, unit="B" if source.endswith(".csv") else "", enabled=not quiet)
        bars[source].update(done, total)

    async with open_store(settings.redis, settings.data.dir) as store:
        report = await import_files(
            Directory(store),
            paths,
            region=settings.directory.default_region,
            on_problem=_print_problem,
            progress=progress,
        )
    for bar in bars.values():
        bar.close()
    _print_import_report(report)
    if report.errors:
        print(
            t(
                "有 {n} 处错误：出错的行未导入，其余已导入。改正后重新导入即可（按编号更新，不会重复）。",
                "{n} errors: the rows in error were not imported, the rest were. Fix them and import again "
                "(records update by id, never duplicate).",
                n=report.errors,
            ),
            file=sys.stderr,
        )
        return 2
    return 0


def _stats_json(stats: DirectoryStats) -> dict[str, Any]:
    return {
        "totals": {
            "villages": len(stats.villages),
            "residents": stats.residents,
            "vulnerable": stats.vulnerable,
            "vulnerable_without_cadre": stats.unassigned,
            "contacts": stats.contacts,
            "speakers": stats.speakers,
        },
        "contacts_by_role": stats.contacts_by_role,
        "tags": stats.tags(),
        "unknown_cadres": stats.unknown_cadres,
        "villages": [vars(v) for v in stats.villages],
    }


def _print_stats(stats: DirectoryStats) -> None:
    if not stats.villages:
        print(
            t(
                "名录为空。用 warning directory import 文件… 导入，或用 warning serve --sample 载入示例县。",
                "The directory is empty. Import files with `warning directory import FILE…`, or load the sample "
                "county with `warning serve --sample`.",
            )
        )
        return
    townships: dict[str, list[Any]] = {}
    for v in stats.villages:
        row = townships.setdefault(v.code[:9], [v.code[:9], v.township, 0, 0, 0, 0])
        row[2] += 1
        row[3] += v.residents
        row[4] += v.vulnerable
        row[5] += v.speakers
    print(
        t(
            "合计：{v} 个村，{r} 名居民（其中需确认到人 {vu} 名），{c} 名联系人，{s} 个大喇叭",
            "Totals: {v} villages, {r} residents ({vu} must be confirmed in person), {c} contacts, "
            "{s} loudspeakers",
            v=len(stats.villages),
            r=f"{stats.residents:,}",
            vu=f"{stats.vulnerable:,}",
            c=stats.contacts,
            s=stats.speakers,
        )
    )
    print()
    print(
        render(
            [
                t("乡镇代码", "township"),
                t("名称", "name"),
                t("村", "villages"),
                t("居民", "residents"),
                t("脆弱人群", "vulnerable"),
                t("大喇叭", "speakers"),
            ],
            list(townships.values()),
        )
    )
    print()
    print(
        render(
            [
                t("村代码", "village"),
                t("名称", "name"),
                t("乡镇", "township"),
                t("居民", "residents"),
                t("脆弱人群", "vulnerable"),
                t("未分配干部", "no cadre"),
                t("大喇叭", "speakers"),
                t("联系人", "contacts"),
            ],
            [
                [v.code, v.name, v.township, v.residents, v.vulnerable, v.unassigned, v.speakers, v.contacts]
                for v in stats.villages
            ],
        )
    )
    print()
    print(render([t("标签", "tag"), t("人数", "residents")], [[k, n] for k, n in stats.tags().items()]))
    print()
    print(
        render(
            [t("角色", "role"), t("人数", "contacts")], [[k, n] for k, n in stats.contacts_by_role.items()]
        )
    )
    if stats.unassigned:
        print(
            t(
                "\n注意：{n} 名脆弱居民没有包联干部，无法安排上门确认。请在居民文件的 cadre 列补上。",
                "\nAttention: {n} vulnerable residents have no cadre, so nobody will confirm them in person. "
                "Fill in the cadre column of the residents file.",
                n=stats.unassigned,
            )
        )
    for cadre, n in stats.unknown_cadres.items():
        print(
            t(
                "注意：{n} 名居民的包联干部 {c} 不在联系人名录中。",
                "Attention: {n} residents name cadre {c}, who is not in the contacts.",
                n=n,
                c=cadre,
            )
        )


async def _directory_stats(settings: config_mod.Settings, as_json: bool) -> int:
    async with open_store(settings.redis, settings.data.dir) as store:
        stats = await Directory(store).stats()
    if as_json:
        print(json.dumps(_stats_json(stats), ensure_ascii=False, indent=2))
    else:
        _print_stats(stats)
    return 0


def _cmd_directory(settings: config_mod.Settings, args: argparse.Namespace) -> int:
    if args.directory_command == "import":
        return asyncio.run(_directory_import(settings, args.paths, args.quiet))
    return asyncio.run(_directory_stats(settings, args.json))


def _cmd_demo(settings: config_mod.Settings, args: argparse.Namespace) -> int:
    from warning.demo import run_demo

    return asyncio.run(run_demo(settings, keep_serving=args.serve))


def _cmd_sample(settings: config_mod.Settings, args: argparse.Namespace) -> int:
    from warning.sample.generate import write_county

    if args.residents < 1:
        raise UsageError(t("--residents 至少为 1", "--residents must be at least 1"))
    bar = ProgressBar(t("生成居民", "residents"))
    paths = write_county(args.out, residents=args.residents, seed=args.seed, progress=bar.update)
    bar.close()
    for path in paths:
        print(path)
    return 0


_COMMANDS: dict[str, Callable[[config_mod.Settings, argparse.Namespace], int]] = {
    **dict.fromkeys(cli_broadcast.COMMANDS, cli_broadcast.run),
    "serve": _cmd_serve,
    "check-config": _cmd_check_config,
    "directory": _cmd_directory,
    "sample": _cmd_sample,
    "demo": _cmd_demo,
}


def _lang_from_argv(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `warning` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Help texts are built before parsing, so pick their language from --lang or the environment first.
    set_language(_lang_from_argv(argv) or config_mod.language_hint())
    try:
        args = _parser().parse_args(argv)
        settings = config_mod.load_settings(args.config)
        set_language(args.lang or settings.ui.language)
        configure_logging(settings.log, quiet=args.command != "serve")
        return _COMMANDS[args.command](settings, args)
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
