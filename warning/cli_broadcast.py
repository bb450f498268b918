"""Commands of the broadcast engine: issue, approve, return, reject, cancel, worker, deadletters, feeds,
speaker-sim.

The CLI runs on the host, as its administrator: `warning issue` issues directly (no two-person wait),
audited as actor "cli" with role admin; `warning approve` may approve what anyone submitted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from datetime import datetime

from warning.broadcast import AlertRequest, Broadcaster, parse_levels, split_codes
from warning.broker import open_broker
from warning.cli_preview import confirm, print_preview
from warning.cli_status import print_counts
from warning.config import Settings
from warning.datadir import require_data
from warning.deliveries import ChannelCounts
from warning.engine import channel_names, run_engine
from warning.errors import UsageError
from warning.i18n import t
from warning.labels import label
from warning.model import Alert
from warning.progress import ProgressBar
from warning.store import Store, open_store
from warning.textable import render

WORKERS_ALIVE = 15.0  # seconds: a worker heartbeat newer than this counts as running
HOST_ACTOR, HOST_ROLE = "cli", "admin"  # who the audit log says acted through the CLI


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
            outcome = await service.ingest_cap(data, actor=HOST_ACTOR, role=HOST_ROLE)
            print(outcome.alert.id)
            print(t("CAP：{a}", "CAP: {a}", a=outcome.action), file=sys.stderr)
            if outcome.action != "issued":
                return 0
            alert = outcome.alert
        else:
            request = _request(args)
            # With --preview the preview is the output; otherwise stdout keeps only the alert id for scripts.
            print_preview(await service.preview(request), sys.stdout if args.preview else sys.stderr)
            if args.preview:
                print(t("（仅预览，没有发送任何消息）", "(preview only: nothing was sent)"), file=sys.stderr)
                return 0
            if not args.yes and not await confirm(
                t("确认发布以上预警？", "Issue this warning?"), exercise=request.exercise
            ):
                print(t("已取消，没有发送任何消息。", "Not issued: nothing was sent."), file=sys.stderr)
                return 1
            alert = await service.prepare(request, actor=HOST_ACTOR, role=HOST_ROLE)
            print(alert.id)
        bar = ProgressBar(t("排队（村）", "queuing (villages)"), enabled=args.wait)
        report = await service.fan_out(alert, progress=bar.update)
        bar.close()
        queued = ", ".join(f"{label('channel', k)} {v:,}" for k, v in report.queued.items())
        print(t("已排队：{q}", "queued: {q}", q=queued or "0"), file=sys.stderr)
        if args.wait:
            print_counts(await wait_for_deliveries(service, store, alert))
    return 0


async def _approve(settings: Settings, args: argparse.Namespace) -> int:
    require_data(settings)
    async with open_store(settings.redis, settings.data.dir) as store:
        service = Broadcaster(store, settings)
        alert = await service.approve(args.id, actor=HOST_ACTOR, role=HOST_ROLE)
        bar = ProgressBar(t("排队（村）", "queuing (villages)"))
        report = await service.fan_out(alert, progress=bar.update)
        bar.close()
    queued = ", ".join(f"{label('channel', k)} {v:,}" for k, v in report.queued.items())
    print(
        t(
            "已批准并发布 {id}；已排队：{q}",
            "approved and issued {id}; queued: {q}",
            id=alert.id,
            q=queued or "0",
        )
    )
    return 0


async def _return(settings: Settings, args: argparse.Namespace) -> int:
    require_data(settings)
    async with open_store(settings.redis, settings.data.dir) as store:
        alert = await Broadcaster(store, settings).return_for_edit(
            args.id, actor=HOST_ACTOR, role=HOST_ROLE, reason=args.reason
        )
    print(
        t(
            "已退回 {id} 供修改（草稿），理由：{r}",
            "returned {id} for edit (now a draft); reason: {r}",
            id=alert.id,
            r=args.reason.strip(),
        )
    )
    return 0


async def _reject(settings: Settings, args: argparse.Namespace) -> int:
    require_data(settings)
    async with open_store(settings.redis, settings.data.dir) as store:
        alert = await Broadcaster(store, settings).reject(
            args.id, actor=HOST_ACTOR, role=HOST_ROLE, reason=args.reason
        )
    print(
        t(
            "已驳回 {id}，不会发布；理由：{r}",
            "rejected {id}: it will not be issued; reason: {r}",
            id=alert.id,
            r=args.reason.strip(),
        )
    )
    return 0


async def _cancel(settings: Settings, args: argparse.Namespace) -> int:
    require_data(settings)
    async with open_store(settings.redis, settings.data.dir) as store:
        outcome = await Broadcaster(store, settings).cancel(args.id, silent=args.silent, note=args.note)
    if outcome.again:
        print(
            t(
                "{id} 早已撤销，没有再发送任何消息。",
                "{id} was already cancelled: nothing more was sent.",
                id=args.id,
            )
        )
        return 0
    if args.silent:
        print(
            t(
                "已撤销 {id}：未发出的消息不再发送，大喇叭已下发停播；按 --silent 未发解除通知。",
                "cancelled {id}: nothing pending will be sent, loudspeakers are told to stop; no all-clear "
                "(--silent).",
                id=args.id,
            )
        )
        return 0
    queued = "，".join(f"{label('channel', k)} {v:,}" for k, v in outcome.all_clear.items())
    print(
        t(
            "已撤销 {id}：未发出的消息不再发送；解除通知已排队：{q}",
            "cancelled {id}: nothing pending will be sent; all-clear queued: {q}",
            id=args.id,
            q=queued or t("无（还没有人收到这条预警）", "none (nobody had received the alert yet)"),
        )
    )
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
    require_data(settings)
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
    "return": _return,
    "reject": _reject,
    "cancel": _cancel,
    "worker": _worker,
    "deadletters": _deadletters,
    "speaker-sim": _speaker_sim,
    "feeds": _feeds,
}
