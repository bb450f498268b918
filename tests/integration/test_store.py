"""The Redis connection: the embedded server's lifetime and persistence, and the volatile-Redis guard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Servers, new_namespace
from warning.config import RedisSettings
from warning.errors import StoreError, VolatileStoreError
from warning.store import open_store
from warning.store.embedded import EmbeddedRedis


async def test_embedded_redis_persists_across_restarts(tmp_path: Path) -> None:
    """Data written to the embedded Redis is there after it is stopped and started again (AOF)."""
    settings = RedisSettings()
    async with open_store(settings, tmp_path) as store:
        assert store.embedded and store.persistence == "aof"
        await store.redis.set(store.keys.key("probe"), "好")
    assert not (tmp_path / "redis" / "redis.sock").exists(), "the owner stops its server on exit"
    async with open_store(settings, tmp_path) as store:
        assert await store.redis.get(store.keys.key("probe")) == "好"


async def test_second_process_joins_as_guest(tmp_path: Path) -> None:
    """While one owner runs the server, another user of the data dir connects without starting or stopping it."""
    owner = EmbeddedRedis(tmp_path)
    await owner.start()
    try:
        # Pretend the owner is another live process (our parent), as `warning serve` would be.
        (tmp_path / "redis" / "owner.pid").write_text(str(os.getppid()))
        guest = EmbeddedRedis(tmp_path)
        await guest.start()
        assert not guest.owned
        await guest.stop()
        assert (tmp_path / "redis" / "redis.sock").exists(), "a guest never stops the owner's server"
    finally:
        (tmp_path / "redis" / "owner.pid").write_text(str(os.getpid()))
        await owner.stop()


async def test_server_of_a_killed_owner_is_adopted(tmp_path: Path) -> None:
    """A server whose owner died is adopted (and later stopped) by the next process, never duplicated."""
    first = EmbeddedRedis(tmp_path)
    await first.start()
    server_pid = int((tmp_path / "redis" / "redis.pid").read_text())
    (tmp_path / "redis" / "owner.pid").write_text("999999999")  # an owner that no longer exists
    second = EmbeddedRedis(tmp_path)
    await second.start()
    assert second.owned
    assert int((tmp_path / "redis" / "redis.pid").read_text()) == server_pid, "no second server was started"
    first.owned = False  # the "dead" owner never stops it
    await second.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    if first._process is not None:
        await first._process.wait()


async def test_volatile_redis_is_refused_unless_allowed(servers: Servers, tmp_path: Path) -> None:
    """A Redis without AOF or RDB is refused with a message that says how to fix it."""
    url = servers.redis_url  # CI's Redis and the session's test server both run without persistence
    namespace = new_namespace()
    with pytest.raises(VolatileStoreError, match="allow_volatile"):
        async with open_store(RedisSettings(url=url, namespace=namespace), tmp_path):
            pass
    async with open_store(
        RedisSettings(url=url, namespace=namespace, allow_volatile=True), tmp_path
    ) as store:
        assert store.persistence == "none"


async def test_unreachable_redis_says_what_to_check(tmp_path: Path) -> None:
    """A URL nobody listens on fails with StoreError naming the setting, not a traceback."""
    with pytest.raises(StoreError, match="WARNING_REDIS_URL"):
        async with open_store(RedisSettings(url="redis://127.0.0.1:1/0"), tmp_path):
            pass


async def test_socket_path_too_long_is_explained(tmp_path: Path) -> None:
    """A data dir too deep for a Unix socket is reported with the fix (a shorter WARNING_DATA_DIR)."""
    deep = tmp_path / ("x" * 120)
    with pytest.raises(StoreError, match="WARNING_DATA_DIR"):
        await EmbeddedRedis(deep).start()


def test_a_killed_unreaped_owner_counts_as_dead() -> None:
    """An owner killed but not yet reaped (a zombie) is dead: its server gets adopted, not joined as a guest."""
    import subprocess
    import time

    from warning.store.embedded import _pid_alive

    child = subprocess.Popen(["sleep", "30"])
    assert _pid_alive(child.pid)
    child.kill()
    time.sleep(0.2)  # killed, and deliberately not reaped yet
    assert not _pid_alive(child.pid)
    child.wait()
