"""The Redis connection: to `redis.url`, or to the embedded server; checks that the data will persist."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from warning.config import RedisSettings, redact_url
from warning.errors import StoreError, VolatileStoreError
from warning.i18n import t
from warning.store.embedded import EmbeddedRedis

log = logging.getLogger(__name__)

KEY_VERSION = "1"
MAX_CONNECTIONS = 64  # per process


class ReadersBusy(StoreError):
    """Every connection of the readers' pool stayed busy for `redis.read_pool_timeout`: answer 503."""


class _ReaderPool(aioredis.BlockingConnectionPool):
    """The readers' pool: a wait that times out is `ReadersBusy`, told apart from Redis being down."""

    async def get_connection(self, *args: object, **kwargs: object) -> aioredis.Connection:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]
        except RedisConnectionError as exc:
            if str(exc) != "No connection available.":
                raise
            raise ReadersBusy(t("读取繁忙，请稍后重试", "too many readers at once, retry shortly")) from exc


@dataclass(frozen=True)
class Keyspace:
    """Builds Redis keys: `{namespace}:{version}:{part}:…`. Modules build their own keys with it."""

    namespace: str

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:{KEY_VERSION}"

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))


@dataclass(frozen=True)
class Store:
    """An open Redis client plus what the rest of the service needs to know about it."""

    redis: aioredis.Redis
    keys: Keyspace
    url: str  # redacted, for logs and /readyz
    embedded: bool
    persistence: str  # "aof", "rdb", or "none"
    # The web readers' own small pool (reach views, status): they wait for each other, never for the
    # fan-out's or the workers' connections, nor the writers for them. `redis` where none was opened.
    reader: aioredis.Redis | None = None

    @property
    def readers(self) -> aioredis.Redis:
        return self.reader if self.reader is not None else self.redis


async def persistence_of(client: aioredis.Redis) -> str:
    """`"aof"`, `"rdb"` or `"none"`: how this server keeps data across a restart."""
    try:
        aof = (await client.config_get("appendonly")).get("appendonly", "no")
        save = (await client.config_get("save")).get("save", "")
    except ResponseError:
        # Managed Redis often disables CONFIG; INFO still tells whether AOF is on.
        info = await client.info("persistence")
        return "aof" if info.get("aof_enabled") in (1, "1") else "none"
    if aof == "yes":
        return "aof"
    return "rdb" if (save or "").strip() else "none"


@asynccontextmanager
async def open_store(settings: RedisSettings, data_dir: Path) -> AsyncIterator[Store]:
    """Connect to Redis (starting the embedded server if no URL is configured) and close it after.

    Raises:
        StoreError: Redis cannot be reached or started.
        VolatileStoreError: Redis keeps nothing on disk and `redis.allow_volatile` is false.
    """
    embedded = None if settings.url else EmbeddedRedis(data_dir, appendfsync=settings.appendfsync)
    url = await embedded.start() if embedded else settings.url
    # A bounded pool that makes callers wait for a free connection: a burst of webhooks or workers
    # queues briefly instead of failing with "Too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=30,
        decode_responses=True,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    client = aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it
    reader = aioredis.Redis.from_pool(
        _ReaderPool.from_url(
            url,
            max_connections=settings.read_pool_size,
            timeout=settings.read_pool_timeout,
            decode_responses=True,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
    )
    try:
        try:
            await client.ping()
            persistence = await persistence_of(client)
        except (RedisError, OSError) as exc:
            raise StoreError(
                t(
                    "无法连接 Redis {url}：{e}。请检查 redis.url（WARNING_REDIS_URL），或不设置它以使用内置 Redis",
                    "cannot reach Redis at {url}: {e}. Check redis.url (WARNING_REDIS_URL), or unset it to use "
                    "the embedded Redis",
                    url=redact_url(url),
                    e=exc,
                )
            ) from exc
        if persistence == "none" and not settings.allow_volatile:
            raise VolatileStoreError(
                t(
                    'Redis {url} 未开启持久化（appendonly no，save ""），重启即丢失全部数据。请开启 AOF'
                    "（appendonly yes），或仅在测试中设置 redis.allow_volatile = true",
                    'Redis at {url} keeps nothing on disk (appendonly no, save ""): a restart loses every '
                    "alert and delivery. Turn on AOF (appendonly yes), or set redis.allow_volatile = true for "
                    "tests only",
                    url=redact_url(url),
                )
            )
        if persistence == "rdb":
            log.warning("redis persists only with RDB snapshots; a crash loses the writes since the last one")
        if persistence == "none":
            log.warning("redis keeps nothing on disk (allowed by redis.allow_volatile)")
        yield Store(
            redis=client,
            keys=Keyspace(settings.namespace),
            url=redact_url(url),
            embedded=embedded is not None,
            persistence=persistence,
            reader=reader,
        )
    finally:
        await reader.aclose()
        await client.aclose()
        if embedded is not None:
            await embedded.stop()
