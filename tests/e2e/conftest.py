"""Running the `warning` command as a user does: a subprocess with its own data dir and environment."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Servers, free_port


@dataclass
class Cli:
    """Runs `python -m warning …` with an environment that selects embedded or real servers."""

    env: dict[str, str]
    cwd: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "warning", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "warning", *args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started.append(process)
        return process

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['WARNING_SERVER_PORT']}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get_json(self, path: str) -> tuple[int, Any]:
        status, body = self.get(path)
        return status, json.loads(body)

    def wait_healthy(self, process: subprocess.Popen[str], within: float = 60) -> float:
        """Seconds until /healthz answers 200; fails with the service's output if it dies first."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"warning serve exited with {process.returncode}:\n{output}")
            try:
                if self.get("/healthz")[0] == 200:
                    return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"/healthz did not answer within {within} s")

    def stop(self, process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
        process.send_signal(sig)
        return process.wait(30)


def _base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARNING_")}
    env.update(
        WARNING_DATA_DIR=str(data_dir),
        WARNING_SERVER_PORT=str(free_port()),
        WARNING_MQTT_EMBEDDED_PORT=str(free_port()),
        WARNING_LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(params=["embedded", "real"])
def cli(request: pytest.FixtureRequest, servers: Servers, namespace: str, tmp_path: Path) -> Iterator[Cli]:
    """The CLI on the embedded default, and (when REDIS_URL/MQTT_URL are set) on the real servers."""
    env = _base_env(tmp_path / "var")
    if request.param == "real":
        if not servers.real:
            pytest.skip("REDIS_URL not set: this run covers the embedded default only")
        env.update(
            WARNING_REDIS_URL=servers.redis_url,
            WARNING_REDIS_ALLOW_VOLATILE="true",
            WARNING_REDIS_NAMESPACE=namespace,
        )
        if servers.mqtt_url:
            env["WARNING_MQTT_URL"] = servers.mqtt_url
    tool = Cli(env=env, cwd=tmp_path)
    yield tool
    _end(tool, tmp_path / "var")


@pytest.fixture
def embedded_cli(tmp_path: Path) -> Iterator[Cli]:
    """The CLI on the embedded default only."""
    tool = Cli(env=_base_env(tmp_path / "var"), cwd=tmp_path)
    yield tool
    _end(tool, tmp_path / "var")


def _end(tool: Cli, data_dir: Path) -> None:
    """Kill what the test started and still runs; a SIGKILLed service leaves its Redis running by design."""
    for process in tool.started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    pidfile = data_dir / "redis" / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
