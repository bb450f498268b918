"""Commands of the broadcast engine: issue, cancel, status, worker, deadletters, users, speaker-sim."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from warning import cli_reach
from warning.audiences import DEFAULT_AUDIENCES
from warning.broadcast import AlertRequest, Broadcaster, counts_json, parse_levels, split_codes
from warning.broker import open_broker
from warning.cli_reach import print_reach
from warning.config import Settings
from warning.deliveries import ChannelCounts
from warning.engine import channel_names, run_engine
from warning.errors import UsageError
from warning.i18n import t
from warning.model import Alert
from warning.progress import ProgressBar
from warning.store import Store, open_store
from warning.textable import render
from warning.users import Users
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
_STATUS_ZH = {
    "queued": "排队",
    "retrying": "待重试",
    "sending": "发送中",
    "sent": "已发出",
    "delivered": "已送达",
    "failed": "失败",
    "ambiguous": "结果不明",
    "expired": "已过期",
    "cancelled": "已撤销",
    "dead": "死信",
    "no_address": "无号码",
}
WORKERS_ALIVE = 15.0  # seconds: a worker heartbeat newer than this counts as running


def add_parsers(commands: Any) -> None:
    """Register the broadcast commands on the `warning` parser's subcommands."""
    issue = commands.add_parser("issue", help=t("发布预警", "issue a warning"))
    issue.add_argument(
        "--cap",
        type=Path,
        help=t("从 CAP 1.2 文件发布、更新或撤销", "issue, update or cancel from a CAP 1.2 file"),
    )
    issue.add_argument("--event", help=t("事件，如 台风", "event, e.g. Typhoon"))
    issue.add_argument("--level", help="red/orange/yellow/blue | 红色/橙色/黄色/蓝色")
    issue.add_argument("--area", help=t("区域代码，逗号分隔（6/9/12位）", "area codes, comma-separated"))
    issue.add_argument("--headline", default="")
    issue.add_argument("--description", default="")
    issue.add_argument("--instruction", default="")
    issue.add_argument(
        "--expires", help=t("失效时间（ISO 8601，带时区）", "expiry time (ISO 8601 with offset)")
    )
    issue.add_argument("--audiences", default=",".join(DEFAULT_AUDIENCES))
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
        "--wait", action="store_true", help=t("等待发送完成并显示进度", "wait until sent, with progress")
    )

    approve = commands.add_parser("approve", help=t("批准草稿并发布", "approve a draft and issue it"))
    approve.add_argument("id")

    cancel = commands.add_parser("cancel", help=t("撤销预警（停止发送，大喇叭停播）", "cancel a warning"))
    cancel.add_argument("id")

    status = commands.add_parser("status", help=t("预警发送情况", "delivery counts of a warning"))
    status.add_argument("id")
    status.add_argument("--json", action="store_true")

    worker = commands.add_parser("worker", help=t("只运行发送工作进程", "run workers only"))
    worker.add_argument("--channels", help="sms,voice,wechat,wecom,speaker")

    dead = commands.add_parser("deadletters", help=t("查看或重新排队死信", "list or requeue dead letters"))
    dead.add_argument("--requeue", action="store_true")
    dead.add_argument("--channel", help="sms | voice | wechat | wecom | speaker")

    users = commands.add_parser("users", help=t("API 用户", "API users"))
    users_commands = users.add_subparsers(dest="users_command", required=True, parser_class=type(users))
    add = users_commands.add_parser(
        "add", help=t("新建用户并显示其令牌（仅显示一次）", "create a user; prints the token once")
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, help="viewer | operator | approver | admin")

    feeds = commands.add_parser("feeds", help=t("预警源（CAP/Atom/RSS）", "warning feeds (CAP/Atom/RSS)"))
    feeds_commands = feeds.add_subparsers(dest="feeds_command", required=True, parser_class=type(feeds))
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
    cli_reach.add_parsers(commands)


# -- issue / cancel / status -----------------------------------------------------------------------


def _request(args: argparse.Namespace) -> AlertRequest:
    expires = None
    if args.expires:
        try:
            expires = datetime.fromisoformat(args.expires)
        except ValueError:
            raise UsageError(
                t(
                    "--expires 应为 ISO 8601 时间，如 2026-08-01T12:00:00+08:00",
                    "--expires must be an ISO 8601 time such as 2026-08-01T12:00:00+08:00",
                )
            ) from None
    return AlertRequest(
        event=args.event,
        level=parse_levels(args.level),
        areas=split_codes(args.area),
        headline=args.headline,
        description=args.description,
        instruction=args.instruction,
        expires=expires,
        exercise=args.exercise,
        audiences=split_codes(args.audiences),
        id=args.id,
    )


async def live_workers(store: Store) -> int:
    beats = await store.redis.hgetall(store.keys.key("workers"))
    now = time.time()
    return sum(1 for ts in beats.values() if now - float(ts) < WORKERS_ALIVE)


async def wait_for_deliveries(
    service: Broadcaster,
    store: Store,
    alert: Alert,
    *,
    quiet: bool = False,
    give_up_without_workers: float = 15.0,
) -> dict[str, ChannelCounts]:
    """Show a progress bar until nothing of the alert is pending; stop early if no worker runs at all."""
    bar = ProgressBar(t("发送", "sending"), enabled=not quiet)
    without_workers_since: float | None = None
    while True:
        _, counts = await service.status(alert.id)
        total = sum(sum(c.counts.values()) - c.get("no_address") for c in counts.values())
        pending = sum(c.pending for c in counts.values())
        bar.update(total - pending, total)
        if pending == 0:
            bar.close()
            return counts
        if await live_workers(store):
            without_workers_since = None
        else:
            without_workers_since = without_workers_since or time.monotonic()
            if time.monotonic() - without_workers_since > give_up_without_workers:
                bar.close()
                raise UsageError(
                    t(
                        "没有运行中的发送进程：预警已发布并排队，启动 warning serve 或 warning worker 后即会发出",
                        "no worker is running: the warning is issued and queued, and goes out as soon as "
                        "`warning serve` or `warning worker` runs",
                    )
                )
        await asyncio.sleep(0.3)


def print_counts(counts: dict[str, ChannelCounts]) -> None:
    header = [t("渠道", "channel")] + [t(_STATUS_ZH[c], c) for c in STATUS_COLUMNS]
    rows = [[channel] + [c.get(col) for col in STATUS_COLUMNS] for channel, c in counts.items() if c.counts]
    print(render(header, rows) if rows else t("（还没有任何投递）", "(no deliveries yet)"))


async def _issue(settings: Settings, args: argparse.Namespace) -> int:
    if args.cap is None and not (args.event and args.level and args.area):
        raise UsageError(
            t(
                "需要 --cap 文件，或 --event、--level 和 --area",
                "give --cap FILE, or --event, --level and --area",
            )
        )
    async with open_store(settings.redis, settings.data.dir) as store:
        service = Broadcaster(store, settings)
        if args.cap is not None:
            try:
                data = await asyncio.to_thread(args.cap.read_bytes)
            except OSError as exc:
                raise UsageError(
                    t("无法读取 {p}：{e}", "cannot read {p}: {e}", p=args.cap, e=exc.strerror)
                ) from None
            outcome = await service.ingest_cap(data)
            print(outcome.alert.id)
            print(t("CAP：{a}", "CAP: {a}", a=outcome.action), file=sys.stderr)
            if outcome.action != "issued":
                return 0
            alert = outcome.alert
        else:
            alert = await service.prepare(_request(args))
            print(alert.id)
        bar = ProgressBar(t("排队（村）", "queuing (villages)"), enabled=args.wait)
        report = await service.fan_out(alert, progress=bar.update)
        bar.close()
        queued = ", ".join(f"{k} {v:,}" for k, v in report.queued.items())
        print(t("已排队：{q}", "queued: {q}", q=queued or "0"), file=sys.stderr)
        if args.wait:
            print_counts(await wait_for_deliveries(service, store, alert))
    return 0


async def _approve(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings.redis, settings.data.dir) as store:
        alert, report = await Broadcaster(store, settings).approve(args.id)
    queued = ", ".join(f"{k} {v:,}" for k, v in report.queued.items())
    print(
        t(
            "已批准并发布 {id}；已排队：{q}",
            "approved and issued {id}; queued: {q}",
            id=alert.id,
            q=queued or "0",
        )
    )
    return 0


async def _cancel(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings.redis, settings.data.dir) as store:
        alert = await Broadcaster(store, settings).cancel(args.id)
    print(
        t(
            "已撤销 {id}：未发出的消息不再发送，大喇叭已下发停播",
            "cancelled {id}: nothing pending will be sent; loudspeakers are told to stop",
            id=alert.id,
        )
    )
    return 0


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings.redis, settings.data.dir) as store:
        service = Broadcaster(store, settings)
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
    expires = alert.expires.isoformat() if alert.expires else t("无", "none")
    print(
        f"{alert.id}  {alert.event} {alert.level.value}  {alert.state.value}  "
        f"{t('区域', 'areas')}: {','.join(alert.areas)}  {t('失效', 'expires')}: {expires}"
        + ("  【演练】" if alert.exercise else "")
    )
    print_counts(counts)
    print()
    print_reach(view)
    return 0


# -- worker, dead letters, users, simulator --------------------------------------------------------


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    channels = channel_names(settings, args.channels)
    async with (
        open_store(settings.redis, settings.data.dir) as store,
        open_broker(settings.mqtt, start_embedded=False) as broker,
        run_engine(settings, store, broker, channels=channels),
    ):
        print(
            t(
                "发送进程已启动：{c}。按 Ctrl-C 停止。",
                "workers running: {c}. Press Ctrl-C to stop.",
                c=", ".join(channels),
            ),
            flush=True,
        )
        await _until_signalled()
    return 0


async def _deadletters(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings.redis, settings.data.dir) as store:
        service = Broadcaster(store, settings)
        channels = [args.channel] if args.channel else channel_names(settings)
        letters = [letter for channel in channels for letter in await service.dead_letters(channel)]
        requeued = sum([await service.requeue_dead(channel) for channel in channels]) if args.requeue else 0
    if not letters:
        print(t("没有死信。", "no dead letters."))
        return 0
    print(
        render(
            [
                t("渠道", "channel"),
                t("预警", "alert"),
                t("人数", "recipients"),
                t("尝试次数", "attempts"),
                t("原因", "reason"),
            ],
            [
                [d.batch.channel, d.batch.alert_id, len(d.batch.recipients), d.batch.attempt, d.reason]
                for d in letters
            ],
        )
    )
    if args.requeue:
        print(t("已重新排队 {n} 条。", "requeued {n}.", n=requeued))
    return 0


async def _users(settings: Settings, args: argparse.Namespace) -> int:
    async with open_store(settings.redis, settings.data.dir) as store:
        token = await Users(store.redis, store.keys).add(args.name, args.role)
    print(token)
    print(
        t("请妥善保存此令牌，它只显示这一次。", "Keep this token safe: it is shown only once."),
        file=sys.stderr,
    )
    return 0


async def _speaker_sim(settings: Settings, args: argparse.Namespace) -> int:
    from warning.directory.store import Directory
    from warning.sandbox.speakers import SpeakerSimulator

    async with open_store(settings.redis, settings.data.dir) as store:
        devices = [
            s.device_id async for batch in Directory(store).stream_speakers([args.village]) for s in batch
        ]
    if args.count:
        devices = devices[: args.count] + [f"sim-{i:05d}" for i in range(max(0, args.count - len(devices)))]
    if not devices:
        raise UsageError(
            t(
                "没有可模拟的大喇叭：先导入名录，或用 --count 指定数量",
                "no loudspeakers to simulate: import the directory first, or give --count",
            )
        )
    async with open_broker(settings.mqtt, start_embedded=False) as broker:
        simulator = SpeakerSimulator(
            broker, devices, topic_prefix=settings.mqtt.topic_prefix, fail_rate=args.fail_rate
        )
        await simulator.start()
        print(
            t(
                "{n} 个模拟大喇叭已连接 {b}。按 Ctrl-C 停止。",
                "{n} simulated loudspeakers connected to {b}. Press Ctrl-C to stop.",
                n=len(devices),
                b=broker.url,
            ),
            flush=True,
        )
        try:
            await _until_signalled()
        finally:
            await simulator.stop()
    return 0


async def _feeds(settings: Settings, args: argparse.Namespace) -> int:
    from warning.scheduler import feed_poller, poll_feed

    if not settings.feeds:
        raise UsageError(
            t(
                "没有配置预警源：在配置文件里加 [[feeds]]（见 config/warning.example.toml）",
                "no feed configured: add [[feeds]] to the config file (see config/warning.example.toml)",
            )
        )
    rows = []
    async with open_store(settings.redis, settings.data.dir) as store:
        poller = feed_poller(store, Broadcaster(store, settings))
        for feed in settings.feeds:
            for outcome in await poll_feed(poller, feed):
                rows.append(
                    [
                        feed.name,
                        outcome.entry_id or "-",
                        outcome.decision,
                        outcome.alert_id or "-",
                        outcome.reason,
                    ]
                )
    print(
        render(
            [
                t("预警源", "feed"),
                t("条目", "entry"),
                t("处理", "decision"),
                t("预警", "alert"),
                t("原因", "reason"),
            ],
            rows,
        )
        if rows
        else t("预警源中没有条目。", "the feeds have no entries.")
    )
    return 0


COMMANDS = {
    "issue": _issue,
    "approve": _approve,
    "cancel": _cancel,
    "status": _status,
    "worker": _worker,
    "deadletters": _deadletters,
    "users": _users,
    "speaker-sim": _speaker_sim,
    "feeds": _feeds,
    **cli_reach.COMMANDS,
}


def run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(COMMANDS[args.command](settings, args))
