"""Commands that run or describe the service: serve, check-config, demo, sample generate."""

from __future__ import annotations

import argparse
import asyncio
import json

from warning import config as config_mod
from warning.config import Settings
from warning.datadir import store_location
from warning.errors import UsageError
from warning.i18n import t
from warning.progress import ProgressBar
from warning.public_url import public_url_problem


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from warning.web.app import serve  # the web stack is only imported by the commands that serve

    host = args.host or settings.server.host
    port = settings.server.port if args.port is None else args.port
    asyncio.run(serve(settings, host=host, port=port, load_sample=args.sample))
    return 0


def _check_config(settings: Settings, args: argparse.Namespace) -> int:
    source = (
        str(settings.path)
        if settings.path
        else t(
            "无（全部为默认值与环境变量；查找过 {c}）",
            "none (defaults and environment; looked for {c})",
            c=", ".join(str(p) for p in config_mod.config_candidates_now()),
        )
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
    notes = [t("数据：{w}", "data: {w}", w=store_location(settings))]
    link_problem = public_url_problem(settings.server)
    if link_problem:
        notes.append(link_problem)
    if not settings.mqtt.url:
        notes.append(
            t(
                "mqtt.url 未设置：使用内置 MQTT 代理 {h}:{p}",
                "mqtt.url unset: embedded MQTT broker on {h}:{p}",
                h=settings.mqtt.embedded_host,
                p=settings.mqtt.embedded_port,
            )
        )
    print()
    for note in notes:
        print("# " + note)
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from warning.demo import run_demo

    return asyncio.run(run_demo(settings, keep_serving=args.serve))


def _sample(settings: Settings, args: argparse.Namespace) -> int:
    from warning.sample.generate import write_county

    if args.residents < 1:
        raise UsageError(t("--residents 至少为 1", "--residents must be at least 1"))
    bar = ProgressBar(t("生成居民", "residents"))
    paths = write_county(args.out, residents=args.residents, seed=args.seed, progress=bar.update)
    bar.close()
    for path in paths:
        print(path)
    return 0


COMMANDS = {"serve": _serve, "check-config": _check_config, "demo": _demo, "sample": _sample}
