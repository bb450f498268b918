"""Probes and metrics: `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from redis.exceptions import RedisError

from warning.broker import BrokerAddress, probe
from warning.channels.base import Channel
from warning.directory.store import Directory
from warning.errors import BrokerError, DeliveryError
from warning.store import Store

PROBE_TIMEOUT = 2.0


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "warning_http_requests",
            "HTTP requests served",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "warning_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.ready = Gauge(
            "warning_dependency_up",
            "1 if a dependency answered its last probe",
            ["dependency"],
            registry=self.registry,
        )
        self.directory = Gauge(
            "warning_directory_records", "Records in the directory", ["kind"], registry=self.registry
        )
        self.started = Gauge(
            "warning_start_time_seconds", "Unix time the service started", registry=self.registry
        )
        self.started.set_to_current_time()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_middleware(metrics: Metrics) -> Any:
    """Count and time every request by its route pattern (never the raw path: ids would explode the labels)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(name, request.method, str(status)).inc()
            metrics.latency.labels(name).observe(time.perf_counter() - start)

    return middleware


async def _timed(check: Awaitable[object]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await check
    except (RedisError, BrokerError, DeliveryError, OSError, TimeoutError) as exc:
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 1)}


def health_routes(
    store: web.AppKey[Store],
    broker: web.AppKey[BrokerAddress],
    directory: web.AppKey[Directory],
    metrics: web.AppKey[Metrics],
    channels: web.AppKey[dict[str, Channel]],
) -> list[web.RouteDef]:
    """The probe and metrics routes, reading their dependencies from the app under these keys."""

    async def healthz(request: web.Request) -> web.Response:
        """The process is alive and serving (no dependency is consulted)."""
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        """200 when Redis and the MQTT broker answer now (status "degraded" if a provider does not);
        503 naming the failing dependency otherwise."""
        app = request.app
        running = app.get(channels, {})
        redis_check, mqtt_check, *channel_checks = await asyncio.gather(
            _timed(app[store].redis.ping()),
            _timed(probe(app[broker], within=PROBE_TIMEOUT)),
            *(_timed(channel.check()) for channel in running.values()),
        )
        redis_check["url"] = app[store].url
        redis_check["persistence"] = app[store].persistence
        mqtt_check["url"] = app[broker].url
        checks = {"redis": redis_check, "mqtt": mqtt_check}
        checks.update({f"channel:{name}": check for name, check in zip(running, channel_checks, strict=True)})
        for name, check in checks.items():
            app[metrics].ready.labels(name).set(1 if check["ok"] else 0)
        # Redis and the broker decide readiness. A provider that is down makes the service "degraded",
        # not unready: warnings must still be accepted and queued, to go out when the provider is back.
        ready = redis_check["ok"] and mqtt_check["ok"]
        degraded = ready and not all(c["ok"] for c in checks.values())
        status = "degraded" if degraded else "ready" if ready else "not_ready"
        return web.json_response({"status": status, "checks": checks}, status=200 if ready else 503)

    async def metrics_view(request: web.Request) -> web.Response:
        """Prometheus text exposition; directory counts are refreshed from Redis on each scrape."""
        m = request.app[metrics]
        try:
            for kind, count in (await request.app[directory].totals()).items():
                m.directory.labels(kind).set(count)
        except RedisError:
            m.ready.labels("redis").set(0)
        body = generate_latest(m.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics_view)]
