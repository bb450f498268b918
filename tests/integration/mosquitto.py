"""A Mosquitto broker that a test owns: a real `mosquitto` on a free loopback port, with persistence.

The test can SIGKILL it and start it again on the same port and data directory, as a crash and a
supervisor's restart would. Only this process is ever signalled, by its PID; CI's or the system's
Mosquitto (port 1883) is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import time
from pathlib import Path

from tests.conftest import free_port
from warning.broker import BrokerAddress, probe
from warning.errors import BrokerError

MOSQUITTO = "/usr/sbin/mosquitto"


def find_mosquitto() -> str | None:
    """The broker binary: Debian's path first, else one on PATH; None when it is not installed."""
    if os.access(MOSQUITTO, os.X_OK):
        return MOSQUITTO
    return shutil.which("mosquitto")


class Mosquitto:
    """One `mosquitto` process at a time, always on the same port, config and persistence directory."""

    def __init__(self, executable: str, directory: Path, *, autosave_interval: int = 1) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.data = directory / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        # Run as root, mosquitto switches to the `mosquitto` user, which cannot write this test's
        # directory; naming the current user keeps it as is (and is ignored when not root).
        user = pwd.getpwuid(os.getuid()).pw_name
        self.config.write_text(
            f"user {user}\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.data}/\n"
            f"autosave_interval {autosave_interval}\n"
            # The service's session holds every device's acks while it reconnects; the default 1000
            # would drop some of a large burst (see warning.channels.speaker).
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "log_type notice\n"
            "log_type information\n",
            encoding="utf-8",
        )
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port)

    async def start(self, within: float = 15.0) -> None:
        """Start the broker and return once it accepts an MQTT session.

        Raises:
            BrokerError: it exited, or accepted no session within `within` seconds (its log is quoted).
        """
        assert self.process is None, "already running"
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                self.executable, "-c", str(self.config), stdout=log, stderr=log
            )
        self.starts += 1
        deadline = time.monotonic() + within
        while True:
            try:
                await probe(self.address, within=1.0)
                return
            except BrokerError as exc:
                if self.process.returncode is not None or time.monotonic() > deadline:
                    await self.stop()
                    raise BrokerError(f"mosquitto did not come up: {exc}\n{self.tail()}") from exc
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL the broker (no clean shutdown, no last save) and reap it."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)  # this child, by its PID
        await asyncio.wait_for(process.wait(), 10)

    async def stop(self) -> None:
        """Terminate the broker (SIGKILL if it does not exit in time) and reap it; safe to repeat."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 5)

    def tail(self, lines: int = 30) -> str:
        """The end of the broker's log, for failure messages."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no mosquitto log)"
        return "\n".join(text.splitlines()[-lines:])
