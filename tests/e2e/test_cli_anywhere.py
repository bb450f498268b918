"""The CLI as an operator meets it: the same data from any folder, global options anywhere, users and alerts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from warning.sample.generate import sample_files


def _run(
    args: list[str], *, env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warning", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _user_env(home: Path) -> dict[str, str]:
    """A user with a home of their own and no WARNING_* or XDG_* variables: every default applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARNING_", "XDG_"))}
    env.update(
        HOME=str(home),
        WARNING_SERVER_PORT=str(free_port()),
        WARNING_MQTT_EMBEDDED_PORT=str(free_port()),
        WARNING_LOG_FORMAT="text",
    )
    return env


def _stop_embedded(data_dir: Path) -> None:
    pidfile = data_dir / "redis" / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A home folder short enough for the embedded Redis's Unix socket (pytest's tmp paths are too long)."""
    home = Path(tempfile.mkdtemp(prefix="wh", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_commands_find_the_same_data_from_any_folder(tmp_path: Path, short_home: Path) -> None:
    """Users made from one folder are listed from another: the data dir is per user, never the cwd."""
    home, here, there = short_home, tmp_path / "here", tmp_path / "elsewhere"
    for folder in (here, there):
        folder.mkdir()
    env = _user_env(home)
    data = home / ".local" / "share" / "warning"
    try:
        added = _run(["users", "add", "值班员", "--role", "operator"], env=env, cwd=here)
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip().startswith("wt_")
        listed = _run(["users", "list"], env=env, cwd=there)
        assert listed.returncode == 0, listed.stderr
        assert "值班员" in listed.stdout and "值班员" in listed.stdout.splitlines()[-1]
        assert "值班员" in listed.stdout.splitlines()[-1].split()[1]
        assert (data / "redis").is_dir(), "the data went to the per-user folder"
        assert not (here / "var").exists() and not (there / "var").exists()
        assert str(data) in _run(["check-config"], env=env, cwd=there).stdout
    finally:
        _stop_embedded(data)


def test_users_revoke_removes_every_token_and_is_audited(tmp_path: Path, short_home: Path) -> None:
    """`warning users revoke NAME` removes the user's tokens; an unknown name is exit 2 with the fix."""
    env = _user_env(short_home)
    data = short_home / ".local" / "share" / "warning"
    try:
        for _ in range(2):
            assert _run(["users", "add", "张三", "--role", "viewer"], env=env, cwd=tmp_path).returncode == 0
        revoked = _run(["users", "revoke", "张三"], env=env, cwd=tmp_path)
        assert revoked.returncode == 0, revoked.stderr
        assert "2" in revoked.stdout
        assert "张三" not in _run(["users", "list"], env=env, cwd=tmp_path).stdout
        again = _run(["users", "revoke", "张三"], env=env, cwd=tmp_path)
        assert again.returncode == 2 and "warning users list" in again.stderr
    finally:
        _stop_embedded(data)


def test_a_read_command_without_data_says_where_it_looked(tmp_path: Path) -> None:
    """`warning status` on a machine with no service data names the folder it searched, exit 2, and
    creates nothing there."""
    env = _user_env(tmp_path)
    result = _run(["status", "W20261203T000000-abcdef"], env=env, cwd=tmp_path)
    assert result.returncode == 2
    data = tmp_path / ".local" / "share" / "warning"
    assert str(data) in result.stderr and "WARNING_DATA_DIR" in result.stderr
    assert not data.exists(), "a read command started no empty Redis"
    assert _run(["alerts"], env=env, cwd=tmp_path).returncode == 2


def test_global_options_work_before_or_after_the_subcommand(tmp_path: Path) -> None:
    """`--lang` and `--config` are accepted on either side of the subcommand (`warning serve --config F`)."""
    data = tmp_path / "bureau-data"
    config = tmp_path / "bureau.toml"
    config.write_text(f'[data]\ndir = "{data.name}"\n[bureau]\nname = "海屿县应急管理局"\n', encoding="utf-8")
    env = _user_env(tmp_path / "home")
    after = _run(["check-config", "--config", str(config), "--lang", "en"], env=env, cwd=tmp_path)
    before = _run(["--config", str(config), "--lang", "en", "check-config"], env=env, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    assert "# config file: " + str(config) in after.stdout
    assert f'dir = "{data}"' in after.stdout, "a relative data dir is relative to the config file"
    assert "海屿县应急管理局" in after.stdout
    zh = _run(["check-config", "--config", str(config)], env=env, cwd=tmp_path)
    assert "# 配置文件：" in zh.stdout
    bad = _run(["status", "X", "--lang", "fr"], env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "--lang" in bad.stderr


def test_alerts_lists_recent_alerts_in_chinese(tmp_path: Path, short_home: Path) -> None:
    """`warning alerts` lists issued alerts newest first with level and state in words, and `--json`."""
    env = _user_env(short_home)
    data = short_home / ".local" / "share" / "warning"
    try:
        imported = _run(["directory", "import", *_sample_files()], env=env, cwd=tmp_path)
        assert imported.returncode == 0, imported.stderr
        issued = _run(
            [
                "issue",
                "--yes",
                "--event",
                "台风",
                "--level",
                "橙色",
                "--area",
                "331099101",
                "--headline",
                "台风今夜登陆",
                "--instruction",
                "请立即转移到村委会避灾点。",
                "--exercise",
            ],
            env=env,
            cwd=tmp_path,
        )
        assert issued.returncode == 0, issued.stderr
        alert_id = issued.stdout.strip().splitlines()[0]
        listed = _run(["alerts"], env=env, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if alert_id in line)
        assert "橙色" in row and "已发布" in row and "演练" in row and "台风今夜登陆" in row
        as_json = json.loads(_run(["alerts", "--json"], env=env, cwd=tmp_path).stdout)
        assert as_json[0]["id"] == alert_id and as_json[0]["level"] == "orange"
    finally:
        _stop_embedded(data)


def _sample_files() -> list[str]:
    return [str(p) for p in sample_files()]


def _issue_args(*extra: str) -> list[str]:
    return [
        "issue",
        "--event",
        "台风",
        "--level",
        "橙色",
        "--area",
        "331099101201",
        "--headline",
        "台风今夜登陆",
        *extra,
    ]


def test_issue_previews_and_asks_before_sending(tmp_path: Path, short_home: Path) -> None:
    """No instruction is exit 2 naming it; `--preview` prints who gets what (the instruction included, SMS
    segments) and sends nothing; without --yes a "n" sends nothing, a closed stdin asks for --yes, "y" sends."""
    env = _user_env(short_home)
    data = short_home / ".local" / "share" / "warning"
    instruction = "请立即撤离到村委会避灾安置点。"
    try:
        assert _run(["directory", "import", *_sample_files()], env=env, cwd=tmp_path).returncode == 0
        missing = _run(_issue_args("--yes"), env=env, cwd=tmp_path)
        assert missing.returncode == 2 and "--instruction" in missing.stderr
        preview = _run(_issue_args("--instruction", instruction, "--preview"), env=env, cwd=tmp_path)
        assert preview.returncode == 0, preview.stderr
        assert "重点人群" in preview.stdout and "短信" in preview.stdout and "UCS-2" in preview.stdout
        assert preview.stdout.count(instruction) >= 4, "every audience's text carries the instruction"
        assert "请您待在家里" not in preview.stdout
        declined = _run(_issue_args("--instruction", instruction), env=env, cwd=tmp_path, stdin="n\n")
        assert declined.returncode == 1 and "没有发送" in declined.stderr
        closed = _run(_issue_args("--instruction", instruction), env=env, cwd=tmp_path, stdin="")
        assert closed.returncode == 2 and "--yes" in closed.stderr
        assert "还没有发布过预警" in _run(["alerts"], env=env, cwd=tmp_path).stdout
        accepted = _run(_issue_args("--instruction", instruction), env=env, cwd=tmp_path, stdin="y\n")
        assert accepted.returncode == 0, accepted.stderr
        alert_id = accepted.stdout.strip().splitlines()[0]
        assert alert_id.startswith("W") and instruction in accepted.stderr, "the preview went to stderr"
        cancelled = _run(["cancel", alert_id, "--silent"], env=env, cwd=tmp_path)
        assert cancelled.returncode == 0 and "--silent" in cancelled.stdout
    finally:
        _stop_embedded(data)
