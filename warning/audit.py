"""The hash-chained audit log: every entry carries its place (`seq`), the previous entry's hash (`prev`)
and its own `hash` = HMAC-SHA256(key, prev + canonical JSON of its fields), so an edited, removed,
reordered or forged entry is found by `verify`.

audit               STREAM of entries (explicit ids `{ms}-{seq}`), trimmed to about `maxlen` (oldest first)
audit:head          HASH seq, hash, ms, mac: the last entry written (mac: HMAC over seq and hash, so a
                    removed tail cannot be hidden by rewriting the head without the key)
audit:obj:{object}  LIST of stream ids of the entries about one object (exact filters on a large log)
audit:verified      HASH the last verification's result (console page)

The key is derived from the deployment secret links.py signs with (`server.secret`, or the random key
kept in Redis) under a label of its own, so a link key and the audit key are never the same. Appends
are serialised: an asyncio.Lock within the process, WATCH/MULTI on the head across processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from warning.i18n import t, use_language
from warning.store import Keyspace

GENESIS = "0" * 64  # the `prev` of the first entry
FIELDS = ("seq", "prev", "ts", "actor", "role", "ip", "action", "object", "result", "detail")
_LABEL = b"warning audit chain v1"
_OBJECT_INDEX_MAX = 200_000  # ids kept per object (the stream itself keeps about a million)
_APPEND_RETRIES = 100
_PAGE = 2000  # entries read at a time when verifying or exporting

# The client address of the request being served (set by the web layer's middleware), so every audit
# call made while serving it records the IP without its call site knowing about requests.
_client_ip: ContextVar[str] = ContextVar("audit_client_ip", default="")


@contextmanager
def client_ip(ip: str) -> Iterator[None]:
    """Within this block, audit entries record `ip` as the client address."""
    token = _client_ip.set(ip)
    try:
        yield
    finally:
        _client_ip.reset(token)


def canonical(entry: dict[str, str]) -> bytes:
    """The bytes an entry's hash covers: its fields (all but `hash`), sorted, compact JSON."""
    return json.dumps(
        {k: entry.get(k, "") for k in FIELDS if k != "prev"},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


@dataclass(frozen=True)
class Broken:
    """The first entry that breaks the chain: where, which seq, and what is wrong with it."""

    stream_id: str
    seq: int | None
    problem: str  # edited | removed | reordered | forged | key (verified with another key)
    message: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int  # entries checked
    trimmed: int  # entries before the first still there (trimmed away by MAXLEN)
    unchained: int  # entries written before the log was chained (no seq), at its start
    broken: Broken | None
    at: float

    def summary(self) -> str:
        if self.broken is None:
            return t(
                "审计日志完整：{n} 条，链条无断裂（已按保留上限清理最早的 {k} 条{u}）。",
                "audit log intact: {n} entries, the chain is unbroken ({k} oldest trimmed by the cap{u}).",
                n=self.entries,
                k=self.trimmed,
                u=t("，{u} 条为启用链条前的旧记录", "; {u} older entries predate the chain", u=self.unchained)
                if self.unchained
                else "",
            )
        if self.broken.problem == "key":
            return self.broken.message
        return t(
            "审计日志已被改动：第 {seq} 条（流 ID {sid}）{m}",
            "audit log tampered with: entry {seq} (stream id {sid}) {m}",
            seq=self.broken.seq if self.broken.seq is not None else "?",
            sid=self.broken.stream_id,
            m=self.broken.message,
        )


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, str]]  # newest first, each with "id" (stream id)
    next: str | None  # cursor of the next (older) page


def _ms(stream_id: str) -> int:
    return int(stream_id.split("-", 1)[0])


class AuditLog:
    """Appends to, reads and verifies the chained audit stream."""

    def __init__(self, redis: Redis, keys: Keyspace, *, secret: str = "", maxlen: int = 1_000_000) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self.stream = keys.key("audit")
        self.head = keys.key("audit", "head")
        self.verified = keys.key("audit", "verified")
        self._object_prefix = keys.key("audit", "obj")
        self._links_key = keys.key("links", "key")  # the key links.py keeps when server.secret is unset
        self._secret = secret
        self._key: bytes | None = None
        self._lock = asyncio.Lock()

    def object_key(self, obj: str) -> str:
        return f"{self._object_prefix}:{obj}"

    async def key(self) -> bytes:
        """The chain's HMAC key: derived from the deployment secret under the audit's own label."""
        if self._key is None:
            base = self._secret
            if not base:
                await self.redis.set(self._links_key, secrets.token_hex(32), nx=True)
                base = str(await self.redis.get(self._links_key))
            self._key = hmac.new(base.encode(), _LABEL, hashlib.sha256).digest()
        return self._key

    def _mac(self, key: bytes, prev: str, entry: dict[str, str]) -> str:
        return hmac.new(key, prev.encode() + canonical(entry), hashlib.sha256).hexdigest()

    @staticmethod
    def fingerprint(key: bytes) -> str:
        """Names the key without revealing it: a verifier with another key says so, not "tampered"."""
        return hmac.new(key, b"key id", hashlib.sha256).hexdigest()[:16]

    def _head_mac(self, key: bytes, seq: int, digest: str, ms: int) -> str:
        return hmac.new(key, f"head|{seq}|{digest}|{ms}".encode(), hashlib.sha256).hexdigest()

    # -- writing -------------------------------------------------------------------------------------

    async def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        obj: str,
        result: str,
        detail: str = "",
        ip: str | None = None,
    ) -> str:
        """Append one entry to the chain; returns its stream id. `ip` defaults to the request's client."""
        key = await self.key()
        fields = {
            "actor": actor,
            "role": role,
            "ip": _client_ip.get() if ip is None else ip,
            "action": action,
            "object": obj,
            "result": result,
            "detail": detail,
        }
        async with self._lock:
            for _ in range(_APPEND_RETRIES):
                try:
                    return await self._append_once(key, fields)
                except WatchError:  # another process appended first: chain onto its entry instead
                    await asyncio.sleep(secrets.randbelow(5) / 1000)
        raise RuntimeError("audit append kept conflicting with other writers")

    async def _append_once(self, key: bytes, fields: dict[str, str]) -> str:
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(self.head)
            head = {str(k): str(v) for k, v in (await pipe.hgetall(self.head)).items()}
            if head:
                seq, prev, last_ms = int(head["seq"]), head["hash"], int(head["ms"])
            else:
                seq, prev, last_ms = 0, GENESIS, await self._last_ms(pipe)
            now = datetime.now(UTC)
            ms = max(int(now.timestamp() * 1000), last_ms)
            entry = {"seq": str(seq + 1), "prev": prev, "ts": now.isoformat()} | fields
            digest = self._mac(key, prev, entry)
            stream_id = f"{ms}-{seq + 1}"
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.xadd(
                self.stream,
                entry | {"hash": digest},  # type: ignore[arg-type]
                id=stream_id,
                maxlen=self.maxlen,
                approximate=True,
            )
            pipe.hset(
                self.head,
                mapping={
                    "seq": str(seq + 1),
                    "hash": digest,
                    "ms": str(ms),
                    "mac": self._head_mac(key, seq + 1, digest, ms),
                    "key": self.fingerprint(key),
                },
            )
            if fields["object"]:
                pipe.rpush(self.object_key(fields["object"]), stream_id)
                pipe.ltrim(self.object_key(fields["object"]), -_OBJECT_INDEX_MAX, -1)
            await pipe.execute()
        return stream_id

    async def _last_ms(self, pipe: Any) -> int:
        """Before the first chained entry: a millisecond after the last unchained one (ids must grow)."""
        last = await pipe.xrevrange(self.stream, count=1)
        return _ms(str(last[0][0])) + 1 if last else 0

    # -- reading -------------------------------------------------------------------------------------

    async def for_object(self, obj: str, limit: int = 1000) -> list[dict[str, str]]:
        """The entries about `obj`, oldest first (at most the latest `limit`), exact on any size of log."""
        ids = [str(i) for i in await self.redis.lrange(self.object_key(obj), -limit, -1)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in ids:
                pipe.xrange(self.stream, stream_id, stream_id)
            found = await pipe.execute()
        return [_entry(sid, fields) for rows in found for sid, fields in rows or []]

    async def oldest(self, limit: int) -> list[dict[str, str]]:
        rows = await self.redis.xrange(self.stream, count=limit) or []
        return [_entry(sid, fields) for sid, fields in rows]

    async def page(
        self,
        *,
        cursor: str = "",
        limit: int = 50,
        obj: str = "",
        actor: str = "",
        action: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        budget: int = 20_000,
    ) -> Page:
        """A page of entries, newest first, matching every filter given; `next` continues (older).

        At most `budget` entries are looked at per page, so a rare filter on a big log still answers
        fast (with fewer entries and a cursor to look further)."""
        high = cursor or ("+" if until is None else str(int(until.timestamp() * 1000)))
        low = "-" if since is None else str(int(since.timestamp() * 1000))
        if obj:
            return await self._object_page(obj, high, low, limit, actor, action)
        found: list[dict[str, str]] = []
        looked = 0
        while looked < budget:
            rows = await self.redis.xrevrange(self.stream, high, low, count=min(_PAGE, budget - looked))
            if not rows:
                return Page(found, None)
            for sid, fields in rows:
                looked += 1
                entry = _entry(sid, fields)
                if _matches(entry, actor, action):
                    found.append(entry)
                    if len(found) == limit:
                        return Page(found, _before(str(sid)))
            below = _before(str(rows[-1][0]))
            if below is None:
                return Page(found, None)
            high = below
        return Page(found, high)

    async def _object_page(self, obj: str, high: str, low: str, limit: int, actor: str, action: str) -> Page:
        ids = [str(i) for i in await self.redis.lrange(self.object_key(obj), 0, -1)]
        ids = [i for i in ids if _in_range(i, low, high)]
        found: list[dict[str, str]] = []
        for entry in reversed(await self._entries(ids)):
            if _matches(entry, actor, action):
                found.append(entry)
                if len(found) == limit:
                    return Page(found, _before(entry["id"]))
        return Page(found, None)

    async def _entries(self, ids: list[str]) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in ids:
                pipe.xrange(self.stream, stream_id, stream_id)
            found = await pipe.execute()
        return [_entry(sid, fields) for rows in found for sid, fields in rows or []]

    async def scan(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        obj: str = "",
        actor: str = "",
        action: str = "",
    ) -> AsyncIterator[dict[str, str]]:
        """Every entry matching the filters, oldest first (for export)."""
        low = "-" if since is None else str(int(since.timestamp() * 1000))
        high = "+" if until is None else f"({int(until.timestamp() * 1000)}"
        if obj:
            ids = [str(i) for i in await self.redis.lrange(self.object_key(obj), 0, -1)]
            top = "+" if until is None else f"{int(until.timestamp() * 1000) - 1}"
            for entry in await self._entries([i for i in ids if _in_range(i, low, top)]):
                if _matches(entry, actor, action):
                    yield entry
            return
        async for sid, fields in self._rows(low, high):
            entry = _entry(sid, fields)
            if _matches(entry, actor, action):
                yield entry

    async def _rows(self, low: str = "-", high: str = "+") -> AsyncIterator[tuple[str, dict[str, str]]]:
        while True:
            rows = await self.redis.xrange(self.stream, low, high, count=_PAGE)
            for sid, fields in rows or []:
                yield str(sid), {str(k): str(v) for k, v in (fields or {}).items()}
            if not rows or len(rows) < _PAGE:
                return
            low = "(" + str(rows[-1][0])

    async def count(self) -> int:
        return int(await self.redis.xlen(self.stream))

    # -- verifying -----------------------------------------------------------------------------------

    async def verify(self, on_progress: Callable[[int, int], None] | None = None) -> Verification:
        """Check every entry still in the stream against the chain and the head; records the result.

        The head and the last entry are read together first; entries appended while verifying come
        after that last entry and are left for the next verification."""
        key = await self.key()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.head)
            pipe.xrevrange(self.stream, count=1)
            pipe.xlen(self.stream)
            raw_head, last, total = await pipe.execute()
        head = {str(k): str(v) for k, v in (raw_head or {}).items()}
        checker = _Checker(self, key, head)
        if head.get("key") and head["key"] != self.fingerprint(key):
            checker.wrong_key()
        elif last:
            await self._walk(checker, str(last[0][0]), int(total), on_progress)
        if checker.broken is None:
            checker.finish()
        result = Verification(
            checker.broken is None,
            checker.entries,
            checker.trimmed,
            checker.unchained,
            checker.broken,
            time.time(),
        )
        await self.redis.hset(
            self.verified,
            mapping={
                "ok": "1" if result.ok else "0",
                "at": str(result.at),
                "entries": str(result.entries),
                "summary_zh": _in("zh-CN", result.summary),
                "summary_en": _in("en", result.summary),
            },
        )
        return result

    async def _walk(
        self, checker: _Checker, upper: str, total: int, on_progress: Callable[[int, int], None] | None
    ) -> None:
        done = 0
        window: list[tuple[str, dict[str, str]]] = []
        async for row in self._rows("-", upper):
            window.append(row)
            if len(window) >= 2 * _LOOKAHEAD:
                if checker.feed(window[:-_LOOKAHEAD], window):
                    return
                done += len(window) - _LOOKAHEAD
                window = window[-_LOOKAHEAD:]
                if on_progress is not None and done % _PAGE < _LOOKAHEAD:
                    on_progress(done, total)
                await asyncio.sleep(0)  # a big log never holds the event loop for long
        checker.feed(window, window)
        if on_progress is not None:
            on_progress(total, total)

    async def last_verification(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (await self.redis.hgetall(self.verified)).items()}


_LOOKAHEAD = 64  # entries looked ahead to tell a reordering from a removal


def _in(language: str, make: Callable[[], str]) -> str:
    with use_language(language):
        return make()


Row = tuple[str, dict[str, str]]


class _Checker:
    """Walks the entries in stream order and remembers the first that breaks the chain."""

    def __init__(self, log: AuditLog, key: bytes, head: dict[str, str]) -> None:
        self.log = log
        self.key = key
        self.head = head
        self.head_seq = int(head["seq"]) if head.get("seq", "").isdigit() else 0
        self.entries = 0
        self.trimmed = 0
        self.unchained = 0
        self.expected: int | None = None  # the seq the next entry must have
        self.prev = GENESIS
        self.last_id = ""
        self.broken: Broken | None = None

    def wrong_key(self) -> None:
        message = t(
            "无法校验：写入日志的密钥与本次使用的不同。请用与服务相同的 server.secret（环境变量 "
            "WARNING_SERVER_SECRET）运行此命令。",
            "cannot verify: the log was written with another key than this one. Run this command "
            "with the service's server.secret (environment variable WARNING_SERVER_SECRET).",
        )
        self._fail("-", self.head_seq, "key", message)

    def feed(self, rows: list[Row], window: list[Row]) -> bool:
        """Check `rows` (a prefix of `window`, which looks ahead); True once the chain is broken."""
        for index, (sid, fields) in enumerate(rows):
            self._check(sid, fields, window[index + 1 :])
            if self.broken is not None:
                return True
            self.last_id = sid
        return False

    def _fail(self, sid: str, seq: int | None, problem: str, message: str) -> None:
        self.broken = Broken(sid, seq, problem, message)

    def _check(self, sid: str, fields: dict[str, str], ahead: list[Row]) -> None:
        raw_seq = fields.get("seq", "")
        if "hash" not in fields or not raw_seq.isdigit():
            if self.expected is None and not raw_seq:  # from before the chain: counted, not checked
                self.unchained += 1
                return
            self._fail(sid, None, "forged", _forged_fields())
            return
        seq = int(raw_seq)
        valid = hmac.compare_digest(self.log._mac(self.key, fields.get("prev", ""), fields), fields["hash"])
        if self.expected is None:  # the first chained entry still there: those before were trimmed
            self.trimmed = seq - 1
            self.expected, self.prev = seq, (fields.get("prev", "") if seq > 1 else GENESIS)
        if not valid:
            self._fail(sid, seq, *self._invalid(seq, fields["hash"], ahead))
            return
        if seq > self.head_seq:
            self._fail(sid, seq, "forged", _beyond_head())
            return
        if seq != self.expected or fields.get("prev") != self.prev:
            self._order_problem(sid, seq, ahead)
            return
        self.entries += 1
        self.expected, self.prev = seq + 1, fields["hash"]

    def _invalid(self, seq: int, digest: str, ahead: list[Row]) -> tuple[str, str]:
        """An entry whose hash is wrong: edited if the chain still runs through it, forged otherwise."""
        linked = ahead[0][1].get("prev") == digest if ahead else self.head.get("hash") == digest
        if linked and seq <= self.head_seq:
            return "edited", t("内容被修改（哈希不符）", "was edited (its hash does not match)")
        return "forged", t(
            "是没有密钥的人伪造的（哈希不符）", "was forged without the key (its hash does not match)"
        )

    def _order_problem(self, sid: str, seq: int, ahead: list[Row]) -> None:
        expected = self.expected or 0
        later = any(f.get("seq") == str(expected) for _, f in ahead)
        if seq < expected or later:
            message = t(
                "顺序被调换（此处应为第 {e} 条）", "is out of order (entry {e} belongs here)", e=expected
            )
            self._fail(sid, seq, "reordered", message)
            return
        message = t(
            "之前的第 {a}–{b} 条被删除",
            "follows a gap: entries {a}–{b} before it were removed",
            a=expected,
            b=seq - 1,
        )
        self._fail(sid, seq, "removed", message)

    def finish(self) -> None:
        """At the end of the stream: the head says which entry was written last."""
        if not self.head:
            if self.expected is not None:
                self._fail(
                    self.last_id,
                    None,
                    "removed",
                    t("链条头记录被删除", "the chain's head record was removed"),
                )
            return
        digest, ms = self.head.get("hash", ""), self.head.get("ms", "0")
        mac = self.log._head_mac(self.key, self.head_seq, digest, int(ms) if ms.isdigit() else 0)
        if not hmac.compare_digest(mac, self.head.get("mac", "")):
            self._fail(
                self.last_id or "-",
                self.head_seq,
                "forged",
                t("链条头记录被伪造", "the chain's head record was forged"),
            )
            return
        last = (self.expected or 1) - 1
        if self.expected is None or last < self.head_seq:
            message = t(
                "最后的第 {a}–{b} 条被删除",
                "the last entries {a}–{b} were removed",
                a=last + 1,
                b=self.head_seq,
            )
            self._fail(self.last_id or "-", last + 1, "removed", message)


def _forged_fields() -> str:
    return t(
        "不属于链条（缺少或无效的 seq/hash）：是伪造的记录",
        "is not part of the chain (no valid seq/hash): forged",
    )


def _beyond_head() -> str:
    return t("写在链条头之后：是伪造的记录", "comes after the chain's head: forged")


def _entry(sid: Any, fields: Any) -> dict[str, str]:
    return {"id": str(sid)} | {str(k): str(v) for k, v in (fields or {}).items()}


def _matches(entry: dict[str, str], actor: str, action: str) -> bool:
    return (not actor or entry.get("actor") == actor) and (not action or entry.get("action") == action)


def _before(stream_id: str) -> str | None:
    """The exclusive upper bound just below `stream_id` for XREVRANGE (None below the first id)."""
    ms, _, seq = stream_id.partition("-")
    if int(seq or 0) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-18446744073709551615" if int(ms) > 0 else None


def _id_key(stream_id: str, *, upper: bool) -> tuple[int, int]:
    """A stream id or a bound (`-`, `+`, or milliseconds alone) as a comparable pair."""
    if stream_id == "-":
        return (0, 0)
    if stream_id == "+":
        return (2**64, 2**64)
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq) if seq else (2**64 if upper else 0)


def _in_range(stream_id: str, low: str, high: str) -> bool:
    key = _id_key(stream_id, upper=False)
    return _id_key(low, upper=False) <= key <= _id_key(high, upper=True)
