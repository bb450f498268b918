"""The benchmarks' Redis: a private embedded server (the product's own, AOF on) or `--redis URL`.

Every benchmark works in a key namespace of its own and deletes it afterwards. A private server is
the default because `INFO memory` is server-wide: on a shared server, other clients' writes land in
the memory-per-delivery figure.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from redis.asyncio import Redis

from warning.config import Settings, redact_url
from warning.store.embedded import EmbeddedRedis

SETTLE_TIMEOUT = 600.0  # seconds to wait for a background AOF rewrite; then measure anyway


@asynccontextmanager
async def redis_server(url: str) -> AsyncIterator[tuple[str, str]]:
    """Yield (url, description): `url` itself, or a private embedded Redis started for the run."""
    if url:
        yield url, redact_url(url)
        return
    # /tmp, not the working directory: a Unix socket path must stay short.
    data_dir = Path(tempfile.mkdtemp(prefix="wbench-", dir="/tmp"))
    server = EmbeddedRedis(data_dir, appendfsync="everysec")
    try:
        started = await server.start()
        yield started, "private embedded redis-server (AOF, appendfsync everysec)"
    finally:
        await server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def bench_settings(url: str, label: str) -> Settings:
    """Default settings on `url`, in a fresh namespace `bench-{label}-{random}`."""
    base = Settings()
    namespace = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    return replace(base, redis=replace(base.redis, url=url, allow_volatile=True, namespace=namespace))


async def settle(redis: Redis) -> None:
    """Wait until no AOF rewrite or RDB save runs (one started by an import would otherwise compete for
    the CPU with the step timed next, and its rewrite buffer would count in `used_memory`)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        info = await redis.info("persistence")
        busy = ("aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress")
        if not any(int(info.get(field, 0)) for field in busy):
            return
        await asyncio.sleep(0.2)


async def used_memory(redis: Redis) -> int:
    """The server's `used_memory` in bytes, read once background persistence has settled."""
    await settle(redis)
    info = await redis.info("memory")
    return int(info["used_memory"])


async def forks(redis: Redis) -> int:
    """How many times the server has forked (each AOF rewrite or RDB save is one)."""
    info = await redis.info("stats")
    return int(info.get("total_forks", 0))


async def drop_namespace(redis: Redis, namespace: str) -> int:
    """Delete every key of `namespace`; return how many there were."""
    dropped = 0
    batch: list[str] = []
    async for key in redis.scan_iter(match=f"{namespace}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 1000:
            dropped += await redis.unlink(*batch)
            batch.clear()
    if batch:
        dropped += await redis.unlink(*batch)
    return dropped
