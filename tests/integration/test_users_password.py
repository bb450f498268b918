"""`warning users add NAME --role R --password-stdin` sets a console password (refused, exit 2, if it is
empty or shorter than 10 characters); `users list` says whether one is set; the token is still printed."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import Servers
from warning.store import Store
from warning.users import Users


def cli(servers: Servers, store: Store, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "WARNING_REDIS_URL": servers.redis_url,
        "WARNING_REDIS_NAMESPACE": store.keys.namespace,
        "WARNING_REDIS_ALLOW_VOLATILE": "true",
        "WARNING_UI_LANGUAGE": "zh-CN",
    }
    return subprocess.run(
        [sys.executable, "-m", "warning", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_password_from_stdin_is_set_and_checked(store: Store, servers: Servers) -> None:
    """A good password signs in (argon2, checked off the loop); the token is printed once as before."""
    done = cli(
        servers,
        store,
        "users",
        "add",
        "王值班",
        "--role",
        "operator",
        "--password-stdin",
        stdin="台风来了请立即转移123\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("wt_")
    users = Users(store.redis, store.keys)
    user = await users.check_login("王值班", "台风来了请立即转移123")
    assert user is not None and user.role.value == "operator"
    assert await users.check_login("王值班", "台风来了请立即转移12") is None
    listed = cli(servers, store, "users", "list")
    assert "已设置" in listed.stdout and "王值班" in listed.stdout


async def test_a_short_or_empty_password_is_refused_with_exit_2(store: Store, servers: Servers) -> None:
    """Too short or empty: exit 2, a one-line reason in Chinese, and no user made."""
    short = cli(
        servers, store, "users", "add", "李四", "--role", "viewer", "--password-stdin", stdin="short\n"
    )
    assert short.returncode == 2 and "至少 10 个字符" in short.stderr
    empty = cli(servers, store, "users", "add", "李四", "--role", "viewer", "--password-stdin", stdin="\n")
    assert empty.returncode == 2 and "密码为空" in empty.stderr
    assert await Users(store.redis, store.keys).user("李四") is None


async def test_users_without_password_are_listed_as_such(store: Store, servers: Servers) -> None:
    """A token-only user is listed with "未设置" (not set) and cannot sign in to the console."""
    assert cli(servers, store, "users", "add", "接口", "--role", "viewer").returncode == 0
    assert "未设置" in cli(servers, store, "users", "list").stdout
    assert await Users(store.redis, store.keys).check_login("接口", "anything at all") is None
