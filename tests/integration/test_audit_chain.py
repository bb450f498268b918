"""The hash-chained audit log: `warning audit verify` passes a clean log and, with exit 1, names the
entry that was edited, removed (in the middle or at the end), reordered or forged without the key;
appends from two clients at once never fork the chain."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable

from tests.conftest import Servers
from warning.alerts import AlertStore
from warning.audit import AuditLog
from warning.store import Store


def verify(servers: Servers, store: Store) -> subprocess.CompletedProcess[str]:
    """Run `warning audit verify` as an operator would, against the test's Redis and namespace."""
    env = os.environ | {
        "WARNING_REDIS_URL": servers.redis_url,
        "WARNING_REDIS_NAMESPACE": store.keys.namespace,
        "WARNING_REDIS_ALLOW_VOLATILE": "true",
        "WARNING_UI_LANGUAGE": "zh-CN",
    }
    env.pop("WARNING_SERVER_SECRET", None)
    return subprocess.run(
        [sys.executable, "-m", "warning", "audit", "verify", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def filled(store: Store, n: int = 8) -> AuditLog:
    alerts = AlertStore(store.redis, store.keys)
    for i in range(n):
        await alerts.audit(
            actor=f"u{i}", role="operator", action="issue", obj=f"W{i % 3}", result="ok", ip="10.0.0.1"
        )
    return alerts.audit_log_store


async def rewrite(
    store: Store, change: Callable[[list[tuple[str, dict[str, str]]]], list[tuple[str, dict[str, str]]]]
) -> None:
    """Rewrite the stream as a tamperer with Redis access would (same ids, changed contents)."""
    key = store.keys.key("audit")
    rows = [(str(i), {str(k): str(v) for k, v in f.items()}) for i, f in await store.redis.xrange(key)]
    await store.redis.delete(key)
    for sid, fields in change(rows):
        await store.redis.xadd(key, fields, id=sid)  # type: ignore[arg-type]


async def test_a_clean_log_passes(store: Store, servers: Servers) -> None:
    """An untouched log verifies: exit 0 and the count of entries."""
    await filled(store)
    done = verify(servers, store)
    assert done.returncode == 0, done.stderr
    assert "审计日志完整：8 条" in done.stdout


async def test_an_edited_field_is_found(store: Store, servers: Servers) -> None:
    """Changing one field of an entry in the middle is named as edited, with its seq."""
    await filled(store)

    def edit(rows: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
        rows[3][1]["actor"] = "someone-else"
        return rows

    await rewrite(store, edit)
    done = verify(servers, store)
    assert done.returncode == 1
    assert "第 4 条" in done.stderr and "修改" in done.stderr


async def test_a_removed_entry_in_the_middle_is_found(store: Store, servers: Servers) -> None:
    """XDEL of an entry in the middle: the entry after the gap is named, the gap said."""
    log = await filled(store)
    rows = await store.redis.xrange(log.stream)
    await store.redis.xdel(log.stream, rows[4][0])
    done = verify(servers, store)
    assert done.returncode == 1
    assert "第 6 条" in done.stderr and "删除" in done.stderr


async def test_the_removed_last_entry_is_found(store: Store, servers: Servers) -> None:
    """Deleting the newest entry is found through the chain's head."""
    log = await filled(store)
    rows = await store.redis.xrange(log.stream)
    await store.redis.xdel(log.stream, rows[-1][0])
    done = verify(servers, store)
    assert done.returncode == 1
    assert "最后的第 8–8 条被删除" in done.stderr


async def test_reordered_entries_are_found(store: Store, servers: Servers) -> None:
    """Swapping two entries' contents (ids kept in order) is named as reordered."""
    await filled(store)

    def swap(rows: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
        (a, fa), (b, fb) = rows[2], rows[3]
        rows[2], rows[3] = (a, fb), (b, fa)
        return rows

    await rewrite(store, swap)
    done = verify(servers, store)
    assert done.returncode == 1
    assert "顺序被调换" in done.stderr


async def test_a_forged_entry_is_found(store: Store, servers: Servers) -> None:
    """An entry appended by someone without the key (a plausible seq, prev and a made-up hash)."""
    log = await filled(store)
    head = {str(k): str(v) for k, v in (await store.redis.hgetall(log.head)).items()}
    fake = {
        "seq": "9",
        "prev": head["hash"],
        "ts": "2026-01-01T00:00:00+00:00",
        "actor": "admin",
        "role": "admin",
        "ip": "",
        "action": "approve",
        "object": "W1",
        "result": "ok",
        "detail": "",
    }
    fake["hash"] = hashlib.sha256(repr(fake).encode()).hexdigest()
    await store.redis.xadd(log.stream, fake)  # type: ignore[arg-type]
    done = verify(servers, store)
    assert done.returncode == 1
    assert "伪造" in done.stderr and "第 9 条" in done.stderr


async def test_a_forged_entry_in_the_middle_is_found(store: Store, servers: Servers) -> None:
    """An entry slipped in between two real ones is forged (the chain does not run through it)."""
    await filled(store)

    def insert(rows: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
        fake = dict(rows[2][1]) | {"actor": "ghost", "hash": "0" * 64}
        contents = [f for _, f in rows[:3]] + [fake] + [f for _, f in rows[3:]]
        return [(f"{i + 1}-0", fields) for i, fields in enumerate(contents)]  # fresh ids, in order

    await rewrite(store, insert)
    done = verify(servers, store)
    assert done.returncode == 1
    assert "伪造" in done.stderr


async def test_two_clients_appending_at_once_never_fork_the_chain(store: Store, servers: Servers) -> None:
    """Two AuditLogs on two connections (as two processes would be) append 200 entries at once: seqs
    are 1..200 with no gap or repeat, and the chain verifies."""
    from redis.asyncio import Redis

    other = Redis.from_url(servers.redis_url, decode_responses=True)
    try:
        first, second = AuditLog(store.redis, store.keys), AuditLog(other, store.keys)

        async def write(log: AuditLog, who: str) -> None:
            for i in range(100):
                await log.append(actor=who, role="operator", action="issue", obj=f"{who}{i}", result="ok")

        await asyncio.gather(write(first, "a"), write(second, "b"))
    finally:
        await other.aclose()
    seqs = [int(f["seq"]) for _, f in await store.redis.xrange(store.keys.key("audit"))]
    assert seqs == list(range(1, 201))
    done = verify(servers, store)
    assert done.returncode == 0, done.stderr
    assert "200 条" in done.stdout


async def test_filter_by_object_is_exact_past_the_first_thousand(store: Store) -> None:
    """audit_log(obj) finds an object's entries written after 1,000 others (it reads the object's index)."""
    alerts = AlertStore(store.redis, store.keys)
    for i in range(1100):
        await alerts.audit(actor="x", role="operator", action="noise", obj=f"N{i}", result="ok")
    await alerts.audit(actor="y", role="approver", action="approve", obj="LATE", result="ok")
    assert [e["action"] for e in await alerts.audit_log("LATE")] == ["approve"]
