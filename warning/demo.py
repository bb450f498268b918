"""`warning demo`: a complete typhoon drill on the embedded default, with sandbox providers and devices.

A fresh data directory (`{data.dir}/demo`), the sample county, the whole service on a free loopback
port (so the Twilio sandbox's signed receipts come back through the real webhook), simulated
loudspeakers for every device of the county, an orange typhoon warning for one township, progress,
and a reach report. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from warning.broadcast import AlertRequest
from warning.cli_broadcast import wait_for_deliveries
from warning.cli_reach import print_reach
from warning.cli_status import print_counts
from warning.config import EscalationStep, MqttSettings, RedisSettings, Settings, TwilioSettings
from warning.deliveries import ChannelCounts
from warning.errors import UsageError
from warning.i18n import t
from warning.labels import beijing, label
from warning.model import Level
from warning.progress import ProgressBar
from warning.sandbox.cadres import CadreSimulator
from warning.sandbox.speakers import SpeakerSimulator
from warning.store.embedded import EmbeddedRedis
from warning.textable import render
from warning.views import reach_view
from warning.web.app import build_app, listen
from warning.web.keys import BROADCASTER, BROKER, DIRECTORY, ENGINE, EVIDENCE, STORE

DEMO_TOWNSHIP = "331099101"
RECEIPT_GRACE = 10.0  # seconds to wait for the sandbox's delivery receipts after the last send
MINUTE = 1.0  # real seconds per minute of the drill's night: the hour-long ladder plays in a minute
OFFLINE_SPEAKERS = 1  # loudspeakers left offline, so the drill shows a silent one escalated


DEMO_HOST = "127.0.0.1"


def demo_settings(settings: Settings, port: int) -> Settings:
    """The user's settings with everything pointed at embedded, sandboxed, loopback-only parts."""
    host = DEMO_HOST
    return replace(
        settings,
        server=replace(settings.server, host=host, port=port, public_url=f"http://{host}:{port}"),
        data=replace(settings.data, dir=settings.data.dir / "demo"),
        redis=RedisSettings(namespace="demo"),
        mqtt=MqttSettings(embedded_host=host, embedded_port=0, topic_prefix=settings.mqtt.topic_prefix),
        twilio=TwilioSettings(),  # no account: the sandbox
        # The sandbox has no sending cap; a real account's rate comes from the user's config.
        sms=replace(settings.sms, rate_per_second=max(settings.sms.rate_per_second, 500.0), burst=100),
        voice=replace(settings.voice, rate_per_second=50.0, burst=20, retry_after=2 * MINUTE, max_attempts=2),
        # The ladder of the night, in drill time: 15, 30, 45 and 60 minutes.
        escalation=replace(
            settings.escalation,
            confirm_within=15 * MINUTE,
            speaker_play_within=5 * MINUTE,
            sweep_every=0.25,
            steps=tuple(
                EscalationStep(after, notify, channels)
                for after, notify, channels in (
                    (15 * MINUTE, "cadre", ("wecom", "voice")),
                    (30 * MINUTE, "village_head", ("voice", "sms")),
                    (45 * MINUTE, "township_duty", ("voice", "sms")),
                    (60 * MINUTE, "county_duty", ("voice", "sms")),
                )
            ),
        ),
    )


async def run_demo(settings: Settings, *, keep_serving: bool = False) -> int:
    sock = listen(DEMO_HOST, 0)  # bound before anything else starts, so no sandbox can take it
    try:
        return await _drill(settings, sock, keep_serving=keep_serving)
    finally:
        sock.close()


async def _drill(settings: Settings, sock: socket.socket, *, keep_serving: bool) -> int:
    demo = demo_settings(settings, int(sock.getsockname()[1]))
    # Every drill starts from a clean county. A drill killed earlier may have left its Redis running on
    # that directory: adopt and stop it first, or it would linger, orphaned, on a deleted directory.
    if await asyncio.to_thread((demo.data.dir / "redis" / "redis.sock").exists):
        leftover = EmbeddedRedis(demo.data.dir)
        await leftover.start()
        if not leftover.owned:
            raise UsageError(
                t(
                    "另一个演练正在运行（{d}），请先停止它",
                    "another drill is running on {d}; stop it first",
                    d=demo.data.dir,
                )
            )
        await leftover.stop()
    await asyncio.to_thread(shutil.rmtree, demo.data.dir, True)
    app = build_app(demo, load_sample=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    simulator: SpeakerSimulator | None = None
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        directory, service, store = app[DIRECTORY], app[BROADCASTER], app[STORE]
        devices = [s.device_id async for batch in directory.stream_speakers([""]) for s in batch]
        online = [d for d in devices if not d.startswith(f"spk-{DEMO_TOWNSHIP}")]
        online += [d for d in devices if d.startswith(f"spk-{DEMO_TOWNSHIP}")][OFFLINE_SPEAKERS:]
        simulator = SpeakerSimulator(
            app[BROKER], online, topic_prefix=demo.mqtt.topic_prefix, fail_rate=0.05, seed=7
        )
        await simulator.start()
        print(
            t(
                "演练：海屿县示例县已载入，{n}/{all} 个模拟大喇叭在线；短信、电话、微信走沙箱（不会真实发出）；"
                "夜里的1分钟在演练中是{m}秒。",
                "Drill: sample county loaded, {n}/{all} simulated loudspeakers online; SMS, calls and WeChat go "
                "to the sandboxes (nothing real is sent); a minute of the night lasts {m} s here.",
                n=len(online),
                all=len(devices),
                m=MINUTE,
            )
        )
        request = AlertRequest(
            event="台风",
            level=Level.ORANGE,
            areas=(DEMO_TOWNSHIP,),
            exercise=True,
            headline="台风“海燕”将于今夜在我县沿海登陆",
            instruction="请立即远离海边和危旧房屋，渔船回港避风，听从村干部安排转移。",
            expires=datetime.now(UTC) + timedelta(hours=6),
            event_code="11B01",
        )
        sandbox = app[ENGINE].sandbox
        if sandbox is not None:  # a night like a real one: some phones unreachable, some calls unanswered
            sandbox.set_faults(failure_rate=0.04)
            sandbox.set_callees(answer_rate=0.8, press_rate=0.6)
        alert = await service.prepare(request, actor="demo", role="operator")
        stop_cadres = asyncio.Event()
        cadres = CadreSimulator(app[EVIDENCE], alert, MINUTE)
        cadre_task = asyncio.create_task(cadres.run(stop_cadres))
        bar = ProgressBar(t("排队（村）", "queuing (villages)"))
        await service.fan_out(alert, progress=bar.update)
        bar.close()
        print(
            t(
                "已发布 {id}（{level}台风预警，{tw} 镇）",
                "issued {id} ({level} typhoon warning, township {tw})",
                id=alert.id,
                level=label("level", alert.level.value),
                tw=DEMO_TOWNSHIP,
            )
        )
        counts = await wait_for_deliveries(service, store, alert)
        counts = await _wait_for_receipts(service, alert.id, counts)
        print()
        print(t("== 送达报告 ==", "== Delivery report =="))
        print_counts(counts)
        print()
        _print_villages(await _village_rows(app, alert.id, alert.version, simulator))
        await _night(service, alert, demo)
        stop_cadres.set()
        await cadre_task
        view = await reach_view(service, alert.id)
        print()
        print(t("== 叫应汇总 ==", "== Call-and-answer (叫应) summary =="))
        print_reach(view)
        _print_escalations(view)
        known = all(u["responsible"]["name"] for u in view["unreached"])
        print(
            t(
                "模拟村干部回报 {c} 人（被拒 {r}），{s} 位负责人未回应。每位必达人员状态已知"
                "（已确认，或在具名责任人的升级名单上）：{ok}",
                "Simulated cadres confirmed {c} (refused {r}); {s} contacts never answered. Every must-reach "
                "resident is in a known state (confirmed, or on a named person's escalation list): {ok}",
                c=cadres.confirmed,
                r=cadres.refused,
                s=len(cadres.silent),
                ok=t("是", "yes") if known else t("否", "NO"),
            )
        )
        if sandbox is not None:
            print(
                t(
                    "\n沙箱短信：{n} 条，均带【演练】标记：{ok}",
                    "\nSandbox SMS: {n}, all marked as a drill: {ok}",
                    n=len(sandbox.messages),
                    ok=all("【演练】" in m.body or "[DRILL]" in m.body for m in sandbox.messages),
                )
            )
        if keep_serving:
            print(
                t(
                    "\n服务继续运行：{url}（Ctrl-C 停止）",
                    "\nService keeps running at {url} (Ctrl-C to stop)",
                    url=demo.server.base_url,
                ),
                flush=True,
            )
            await asyncio.Event().wait()
        return 0
    finally:
        if simulator is not None:
            await simulator.stop()
        await runner.cleanup()


async def _night(service: Any, alert: Any, demo: Settings) -> None:
    """Let the night run until the last escalation step is due (or everyone is confirmed), with progress."""
    loop = asyncio.get_running_loop()
    last = demo.escalation.steps[-1].after + 2 * MINUTE
    issued = (await service.reach.milestones(alert.id)).get("issued", time.time())
    bar = ProgressBar(t("叫应（夜间分钟）", "call-and-answer (minutes of the night)"))
    end = loop.time() + max(0.0, issued + last - time.time())
    while loop.time() < end:
        left = end - loop.time()
        bar.update(int((last - left) / MINUTE), int(last / MINUTE))
        if not await service.reach.open_count(alert.id) and not await service.escalation.pending(alert.id):
            break
        await asyncio.sleep(0.25)
    bar.close()
    await service.escalation.sweep()


def _print_escalations(view: dict[str, Any]) -> None:
    names = {v["code"]: v["name"] for v in view["villages"] if v["name"]}
    rows = [
        [
            beijing(e["at"]),
            t("大喇叭失联", "silent loudspeaker")
            if e["step"] == "spk"
            else t("第{n}级", "step {n}", n=int(e["step"]) + 1)
            if str(e["step"]).isdigit()
            else e["step"],
            label("role", e["role"]),
            e["name"] or e["contact"] or "-",
            "、".join(names.get(code, code) for code in e["villages"])[:40],
            e["residents"],
            e["detail"],
        ]
        for e in view["escalations"]
    ]
    if rows:
        print(t("升级记录：", "Escalations:"))
        print(
            render(
                [
                    t("时间", "time"),
                    t("步", "step"),
                    t("角色", "role"),
                    t("通知", "notified"),
                    t("村", "villages"),
                    t("人数", "residents"),
                    t("说明", "detail"),
                ],
                rows,
            )
        )


async def _wait_for_receipts(
    service: Any, alert_id: str, counts: dict[str, ChannelCounts]
) -> dict[str, ChannelCounts]:
    """Delivery receipts arrive a moment after the sends; wait briefly until every SMS has one."""
    deadline = asyncio.get_running_loop().time() + RECEIPT_GRACE
    while asyncio.get_running_loop().time() < deadline:
        sms = counts.get("sms")
        if sms is None or sms.get("sent") == 0:
            break
        await asyncio.sleep(0.3)
        _, counts = await service.status(alert_id)
    return counts


async def _village_rows(
    app: web.Application, alert_id: str, version: int, simulator: SpeakerSimulator
) -> list[list[Any]]:
    directory, deliveries = app[DIRECTORY], app[BROADCASTER].deliveries
    states = await deliveries.states(alert_id, version, "speaker")
    sms = await deliveries.states(alert_id, version, "sms")
    rows = []
    for village in await directory.villages(await directory.village_codes([""])):
        speakers = [s async for batch in directory.stream_speakers([village.code]) for s in batch]
        commanded = sum(1 for s in speakers if states.get(f"s:{s.device_id}") in ("sent", "delivered"))
        played = sum(1 for s in speakers if simulator.played.get(s.device_id, 0) > 0)
        residents = {f"r:{r.id}" async for batch in directory.stream_residents([village.code]) for r in batch}
        tally = Counter(state for rid, state in sms.items() if rid in residents)
        rows.append(
            [
                village.code,
                village.name,
                tally["delivered"],
                tally["failed"] + tally["dead"],
                tally["no_address"],
                f"{commanded}/{len(speakers)}",
                played,
            ]
        )
    return rows


def _print_villages(rows: list[list[Any]]) -> None:
    print(
        render(
            [
                t("村代码", "village"),
                t("名称", "name"),
                t("短信送达", "SMS delivered"),
                t("短信失败", "SMS failed"),
                t("无号码", "no phone"),
                t("大喇叭下发", "speakers commanded"),
                t("已播放", "played"),
            ],
            rows,
        )
    )
