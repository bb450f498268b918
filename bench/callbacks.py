"""Benchmark: signed Twilio SMS status callbacks on the real route, against a bare form-reading handler.

Measured: N "delivered" callbacks, each for a different SMS delivery of a fanned-out alert (marked sent
first, as a worker would), each with its own idempotency token and Twilio signature, POSTed
concurrently over loopback keep-alive connections to `/hooks/twilio/status` mounted from `hook_routes`
(as tests/integration/test_hooks.py mounts it: no middlewares). The route checks the signature, drops
replays, moves the delivery ledger and records reach evidence. Baseline, in the same server process
and run: the same requests (same size and headers) to a handler that only reads the form and answers
204. The load comes from a separate process (bench/callback_client.py).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from county import import_county
from redis_target import bench_settings, drop_namespace

from warning.broadcast import AlertRequest, Broadcaster
from warning.evidence import Evidence
from warning.model import Alert, Level
from warning.progress import ProgressBar
from warning.sample.generate import COUNTY_CODE
from warning.sandbox.twilio_callbacks import SIGNATURE_HEADER, sign
from warning.store import Store, open_store
from warning.web.hooks import hook_routes
from warning.web.signatures import IDEMPOTENCY_HEADER

AUTH_TOKEN = "bench-auth-token"  # noqa: S105 (a loopback-only test token)
ACCOUNT_SID = "AC" + "0" * 32
FROM = "+15005550006"
EVIDENCE = web.AppKey("evidence", Evidence)
STORE = web.AppKey("store", Store)
TWILIO = web.AppKey("twilio", str)
WECHAT = web.AppKey("wechat", str)
BARE_PATH = "/bench/bare"
CLIENT = Path(__file__).with_name("callback_client.py")


@dataclass(frozen=True)
class CallbackResult:
    callbacks: int
    connections: int
    seconds: float
    statuses: dict[str, int]
    server_cpu: float  # CPU seconds of the server process during the measured run
    client_cpu: float  # … and of the client process
    baseline_s: tuple[float, ...]
    baseline_server_cpu: tuple[float, ...]
    baseline_client_cpu: tuple[float, ...]
    baseline_statuses: dict[str, int]  # both baseline runs together
    delivered: int  # the ledger's count afterwards: proof each callback did its work once

    @property
    def rate(self) -> float:
        return self.callbacks / self.seconds

    @property
    def baseline_rate(self) -> float:
        return self.callbacks / min(self.baseline_s)


async def sent_deliveries(service: Broadcaster, alert: Alert, wanted: int) -> list[str]:
    """Move up to `wanted` queued SMS deliveries to sent, as a worker would; return their delivery keys."""
    deliveries = service.deliveries
    states = deliveries.states_key(alert.id, alert.version, "sms")
    chosen: list[str] = []
    async for rid, code in deliveries.redis.hscan_iter(states, count=1000):
        if code == "q" and str(rid).startswith("r:"):
            chosen.append(str(rid))
            if len(chosen) == wanted:
                break
    bar = ProgressBar("callbacks: mark deliveries sent")
    for first in range(0, len(chosen), 1000):
        chunk = chosen[first : first + 1000]
        for code in ("s", "S"):
            await deliveries.move(alert.id, alert.version, "sms", [(rid, code) for rid in chunk])
        bar.update(first + len(chunk), len(chosen))
    bar.close()
    return [f"{alert.id}:{alert.version}:sms:{rid}" for rid in chosen]


def build_requests(public: str, port: int, keys: list[str], path: str | None) -> list[bytes]:
    """Raw HTTP/1.1 requests: Twilio's signed "delivered" callback per key, to the real route or `path`."""
    requests = []
    bar = ProgressBar(f"callbacks: sign requests for {path or 'the real route'}")
    for i, key in enumerate(keys):
        target = f"/hooks/twilio/status?d={quote(key, safe='')}"
        sid = f"SM{uuid.uuid4().hex}"
        params = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "From": FROM,
            "MessageSid": sid,
            "MessageStatus": "delivered",
            "SmsSid": sid,
            "SmsStatus": "delivered",
            "To": "+8617400000000",
        }
        body = urlencode(params).encode()
        signature = sign(public + target, params, AUTH_TOKEN)
        if path is not None:
            target = f"{path}?d={quote(key, safe='')}"
        head = (
            f"POST {target} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{SIGNATURE_HEADER}: {signature}\r\n"
            f"{IDEMPOTENCY_HEADER}: {uuid.uuid4()}\r\n"
            "\r\n"
        )
        requests.append(head.encode() + body)
        if i % 1000 == 0:
            bar.update(i, len(keys))
    bar.update(len(keys), len(keys))
    bar.close()
    return requests


async def bare(request: web.Request) -> web.Response:
    """The baseline: read the form, answer 204."""
    await request.post()
    return web.Response(status=204)


async def load(requests: list[bytes], port: int, connections: int, label: str) -> dict[str, Any]:
    """Replay `requests` from a client process; its JSON report (seconds, client_cpu, statuses) plus
    server_cpu, the CPU seconds this (the server's) process spent meanwhile.

    Raises:
        RuntimeError: the client failed, or did not finish in its time budget (it is killed then).
    """
    with tempfile.NamedTemporaryFile(prefix="wbench-requests-", suffix=".pickle") as f:
        f.write(pickle.dumps(requests))
        f.flush()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CLIENT),
            f.name,
            "127.0.0.1",
            str(port),
            str(connections),
            label,
            stdout=asyncio.subprocess.PIPE,
        )
        cpu = time.process_time()
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout=60 + len(requests) / 20)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError(f"the callback client did not finish {label!r} in time") from None
        cpu = time.process_time() - cpu
    if process.returncode != 0:
        raise RuntimeError(f"the callback client failed (exit {process.returncode})")
    report: dict[str, Any] = json.loads(out)
    report["server_cpu"] = cpu
    return report


async def run(url: str, callbacks: int, connections: int) -> CallbackResult:
    """Fan out to a county a little larger than `callbacks`, then measure; keys are dropped after."""
    settings = bench_settings(url, "callbacks")
    namespace = settings.redis.namespace
    async with open_store(settings.redis, settings.data.dir) as store:
        try:
            # About 3 % of residents have no phone: a few more residents than callbacks.
            await import_county(store, callbacks + callbacks // 10 + 50, label="callbacks")
            service = Broadcaster(store, settings)
            bar = ProgressBar("callbacks: issue (villages)")
            alert, _ = await service.issue(
                AlertRequest(
                    event="台风",
                    level=Level.RED,
                    areas=(COUNTY_CODE,),
                    headline="台风将于今夜登陆",
                    instruction="请低洼地区群众立即转移到村委会避灾点",
                    expires=datetime.now(UTC) + timedelta(hours=6),
                    audiences=("public",),
                ),
                actor="bench",
                progress=bar.update,
            )
            bar.close()
            keys = await sent_deliveries(service, alert, callbacks)
            # A running server has its Redis connections open already: open them before timing.
            await asyncio.gather(*(store.redis.ping() for _ in range(connections)))
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
                public = f"http://127.0.0.1:{port}"
                app = web.Application()
                app[EVIDENCE], app[STORE], app[TWILIO], app[WECHAT] = Evidence(service), store, AUTH_TOKEN, ""
                app.add_routes(hook_routes(public, TWILIO, EVIDENCE, STORE, settings.wechat, WECHAT))
                app.add_routes([web.post(BARE_PATH, bare)])
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                await runner.setup()
                try:
                    await web.SockSite(runner, sock).start()
                    real = build_requests(public, port, keys, None)
                    baseline_requests = build_requests(public, port, keys, BARE_PATH)
                    # The baseline before and after the measured run: the best of the two is used.
                    before = await load(baseline_requests, port, connections, "callbacks: baseline (before)")
                    measured = await load(real, port, connections, "callbacks: /hooks/twilio/status")
                    after = await load(baseline_requests, port, connections, "callbacks: baseline (after)")
                finally:
                    await runner.cleanup()
            counts = await service.deliveries.counts(alert.id, alert.version, ["sms"])
            return CallbackResult(
                callbacks=len(keys),
                connections=connections,
                seconds=float(measured["seconds"]),
                statuses=measured["statuses"],
                server_cpu=float(measured["server_cpu"]),
                client_cpu=float(measured["client_cpu"]),
                baseline_s=(float(before["seconds"]), float(after["seconds"])),
                baseline_server_cpu=(float(before["server_cpu"]), float(after["server_cpu"])),
                baseline_client_cpu=(float(before["client_cpu"]), float(after["client_cpu"])),
                baseline_statuses={
                    code: before["statuses"].get(code, 0) + after["statuses"].get(code, 0)
                    for code in {*before["statuses"], *after["statuses"]}
                },
                delivered=counts["sms"].get("delivered"),
            )
        finally:
            await drop_namespace(store.redis, namespace)


def describe(result: CallbackResult) -> list[str]:
    """Lines for the log: what was measured, then the figures."""
    r = result
    statuses = ", ".join(f"{code}: {n:,}" for code, n in r.statuses.items())
    return [
        f"{r.callbacks:,} signed 'delivered' callbacks over {r.connections} loopback keep-alive connections",
        f"/hooks/twilio/status: {r.seconds:.2f} s -> {r.rate:,.0f} callbacks/s (statuses {statuses}; "
        f"ledger delivered afterwards: {r.delivered:,})",
        "baseline (read form, 204), before and after: "
        + ", ".join(f"{s:.2f} s" for s in r.baseline_s)
        + f" -> best {r.baseline_rate:,.0f} requests/s (statuses "
        + ", ".join(f"{code}: {n:,}" for code, n in sorted(r.baseline_statuses.items()))
        + ")",
        f"ratio: the route runs at {r.rate / r.baseline_rate:.2f}x the baseline's rate; "
        f"target >= 10,000 callbacks/s per process: {'met' if r.rate >= 10_000 else 'NOT met'}",
        f"CPU busy (share of wall time): route run server {r.server_cpu / r.seconds:.0%}, "
        f"client {r.client_cpu / r.seconds:.0%}; baseline runs server "
        + ", ".join(f"{c / s:.0%}" for c, s in zip(r.baseline_server_cpu, r.baseline_s, strict=True))
        + ", client "
        + ", ".join(f"{c / s:.0%}" for c, s in zip(r.baseline_client_cpu, r.baseline_s, strict=True)),
    ]
