"""Probes and metrics: `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus).

`/readyz` pings Redis and the MQTT broker on every hit (cheap, each bounded by PROBE_TIMEOUT), but
never calls a provider per hit: each channel's `check()` (a Twilio account fetch, a WeChat token…)
is cached by `ChannelChecks` for `server.readyz_check_ttl` seconds and refreshed in the background,
one refresh per channel at a time, so any number of probes make at most one provider call per
channel per TTL. Each channel's entry says how old its answer is (`checked_s_ago`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from warning.channels.breaker import STATE_VALUE, BreakerState, breaker_states
from warning.directory.store import Directory
from warning.errors import BrokerError, DeliveryError
from warning.store import Store
from warning.web.access import public

PROBE_TIMEOUT = 2.0
CHECK_TTL = 30.0
# A failed check is reused only this long (or the TTL, if shorter): a provider that comes back, or a
# channel still connecting at start, shows as ok within seconds; the call rate stays bounded.
FAILED_CHECK_TTL = 2.0


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
        self.circuit = Gauge(
            "warning_circuit_state",
            "A channel's circuit breaker, the worst over its workers: 0 closed, 1 half-open (probing), 2 open",
            ["channel"],
            registry=self.registry,
        )
        self.circuit_open_workers = Gauge(
            "warning_circuit_open_workers",
            "Workers whose breaker for the channel is open",
            ["channel"],
            registry=self.registry,
        )
        self.link_refusals = Counter(
            "warning_link_refusals",
            "Refused requests to the signed-link pages (/c/…, /r/…) by reason: forbidden (invalid link), "
            "throttled (429)",
            ["reason"],
            registry=self.registry,
        )


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


@dataclass(frozen=True, slots=True)
class _Checked:
    result: dict[str, Any]
    at: float  # time.monotonic() when the check finished


class ChannelChecks:
    """Each channel's last `check()` result, reused for `ttl` seconds; one refresh per channel in flight.

    The first probe of a channel waits for its check (bounded by PROBE_TIMEOUT); later probes get
    the cached answer at once, and once it is older than `ttl` (a failure: FAILED_CHECK_TTL) they
    still get it while one background refresh replaces it.
    """

    def __init__(self, ttl: float = CHECK_TTL) -> None:
        self.ttl = ttl
        self._cached: dict[str, _Checked] = {}
        self._refreshing: dict[str, asyncio.Task[_Checked]] = {}

    async def get(self, name: str, channel: Channel) -> dict[str, Any]:
        """The channel's check result (`ok`, `ms` or `error`) with `checked_s_ago`."""
        cached = self._cached.get(name)
        now = time.monotonic()
        if cached is None or now - cached.at >= self._ttl_of(cached):
            task = self._refreshing.get(name)
            if task is None:
                task = asyncio.create_task(self._refresh(name, channel), name=f"readyz-check-{name}")
                self._refreshing[name] = task
            if cached is None:
                cached = await asyncio.shield(task)
        return {**cached.result, "checked_s_ago": round(max(0.0, time.monotonic() - cached.at), 1)}

    def _ttl_of(self, checked: _Checked) -> float:
        return self.ttl if checked.result["ok"] else min(self.ttl, FAILED_CHECK_TTL)

    async def _refresh(self, name: str, channel: Channel) -> _Checked:
        try:
            try:
                result = await _timed(channel.check())
            except Exception as exc:  # a broken check is a failed check, not a failed probe
                result = {"ok": False, "error": str(exc) or type(exc).__name__}
            checked = _Checked(result, time.monotonic())
            self._cached[name] = checked
            return checked
        finally:
            self._refreshing.pop(name, None)

    async def aclose(self) -> None:
        """Cancel refreshes still running (on app cleanup)."""
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


CHANNEL_CHECKS = web.AppKey("channel_checks", ChannelChecks)


async def _breakers(store: Store, metrics: Metrics) -> dict[str, dict[str, Any]]:
    """The channels' circuit breakers as their workers (in any process) published them; sets the gauge.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    breakers = await breaker_states(store.redis, store.keys)
    for channel, breaker in breakers.items():
        metrics.circuit.labels(channel).set(STATE_VALUE[BreakerState(breaker["state"])])
        metrics.circuit_open_workers.labels(channel).set(breaker["open"])
    return breakers


def health_routes(
    store: web.AppKey[Store],
    broker: web.AppKey[BrokerAddress],
    directory: web.AppKey[Directory],
    metrics: web.AppKey[Metrics],
    channels: web.AppKey[dict[str, Channel]],
    checks: web.AppKey[ChannelChecks] = CHANNEL_CHECKS,
) -> list[web.RouteDef]:
    """The probe and metrics routes, reading their dependencies from the app under these keys.

    `checks` holds the app's `ChannelChecks` (its TTL from settings); without one, a default is used.
    """
    fallback = ChannelChecks()

    def checks_of(app: web.Application) -> ChannelChecks:
        return app.get(checks) or fallback

    @public
    async def healthz(request: web.Request) -> web.Response:
        """The process is alive and serving (no dependency is consulted)."""
        return web.json_response({"status": "ok"})

    @public
    async def readyz(request: web.Request) -> web.Response:
        """200 when Redis and the MQTT broker answer now (status "degraded" if a provider's last check
        failed); 503 naming the failing dependency otherwise. Providers' checks are cached (see above)."""
        app = request.app
        running = app.get(channels, {})
        cache = checks_of(app)
        redis_check, mqtt_check, *channel_checks = await asyncio.gather(
            _timed(app[store].redis.ping()),
            _timed(probe(app[broker], within=PROBE_TIMEOUT)),
            *(cache.get(name, channel) for name, channel in running.items()),
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
        breakers = await _breakers(app[store], app[metrics]) if redis_check["ok"] else {}
        # An open circuit breaker is a provider resting after failing: degraded, as a failed check is.
        resting = any(b["state"] != BreakerState.CLOSED.value for b in breakers.values())
        degraded = ready and (resting or not all(c["ok"] for c in checks.values()))
        status = "degraded" if degraded else "ready" if ready else "not_ready"
        return web.json_response(
            {"status": status, "checks": checks, "breakers": breakers}, status=200 if ready else 503
        )

    @public
    async def metrics_view(request: web.Request) -> web.Response:
        """Prometheus text exposition; directory counts are refreshed from Redis on each scrape."""
        m = request.app[metrics]
        try:
            for kind, count in (await request.app[directory].totals()).items():
                m.directory.labels(kind).set(count)
            await _breakers(request.app[store], m)
        except RedisError:
            m.ready.labels("redis").set(0)
        body = generate_latest(m.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics_view)]
