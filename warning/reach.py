"""The reach ledger (DESIGN §4 "Reach"): per (alert, resident), every piece of evidence merged into one state.

    pending → notified (machine evidence: SMS delivered, push accepted, call answered, loudspeaker played
              in their village) → acknowledged (the resident: press-1, confirm link, SMS reply)
                                   or confirmed (their cadre, with an outcome)

Keys, per alert (all versions of it share one ledger):
    reach:{id}:r        HASH resident → "{state}{must}|{village}|{audience}|{cadre}"
    reach:{id}:e        HASH "{resident}|{source}" → "{rank}{code}" — the best evidence of each source
    reach:{id}:c        HASH resident → JSON of the cadre's latest confirmation (outcome, note, by, at, late)
    reach:{id}:n        HASH counters: "{scope}:{state}" for scopes all, must, v:{village}, mv:{village},
                        au:{audience}, k:{cadre}; "{scope}:total"; "outcome:{o}"; "late"
    reach:{id}:open     SET must-reach residents neither acknowledged nor confirmed (escalation works on it)
    reach:{id}:task:{c} SET must-reach residents on cadre c's list; reach:{id}:cadres HASH cadre → count
    reach:{id}:t        HASH milestones → unix time (first_sent, machine_90, must_100, v:{code}:must_100 …)
    reach:{id}:heard    HASH village → unix time its first loudspeaker reported `played`

Every change is one Lua script: per source the evidence only moves forward (a late `sent` never
overwrites `delivered`), the state only moves forward, counters move with it, so duplicate and
out-of-order callbacks change nothing the second time. Views read counters, never scan the ledger.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis

from warning.store import Keyspace

STATES: Final = {"p": "pending", "n": "notified", "a": "acknowledged", "c": "confirmed"}
OUTCOMES: Final = ("reached", "evacuated", "not_home", "refused", "needs_help")
DONE: Final = frozenset("ac")  # a must-reach resident in these needs nobody to act any more

# Evidence per source: code → (rank within the source, reach state it proves or "" for none).
# Ranks order each source's codes: a lower rank never overwrites a higher one.
EVIDENCE: Final[dict[str, dict[str, tuple[int, str]]]] = {
    "sms": {"S": (1, ""), "F": (2, ""), "D": (3, "n")},
    "wechat": {"S": (1, "n"), "F": (2, ""), "D": (3, "n")},
    "voice": {"S": (1, ""), "F": (2, ""), "D": (3, "n"), "K": (4, "a")},
    "speaker": {"H": (1, "n")},
    "link": {"K": (1, "a")},
    "reply": {"K": (1, "a")},
    "cadre": {"C": (1, "c")},
}

# KEYS: r, n, open. ARGV: key prefix for task sets, audience, must ("1"/"0"), village, then rid, cadre, …
_REGISTER = """
local fresh = 0
local inc, tasks = {}, {}
local function bump(name) inc[name] = (inc[name] or 0) + 1 end
for i = 5, #ARGV, 2 do
  local rid, cadre = ARGV[i], ARGV[i + 1]
  local cur = redis.call('HGET', KEYS[1], rid)
  if not cur then
    redis.call('HSET', KEYS[1], rid, 'p' .. ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[2] .. '|' .. cadre)
    for _, scope in ipairs({'all', 'v:' .. ARGV[4], 'au:' .. ARGV[2]}) do
      bump(scope .. ':p')
      bump(scope .. ':total')
    end
    fresh = fresh + 1
  end
  if ARGV[3] == '1' and (not cur or string.sub(cur, 2, 2) == '0') then
    local state = cur and string.sub(cur, 1, 1) or 'p'
    if cur then redis.call('HSET', KEYS[1], rid, state .. '1' .. string.sub(cur, 3)) end
    for _, scope in ipairs({'must', 'mv:' .. ARGV[4], 'k:' .. cadre}) do
      bump(scope .. ':' .. state)
      bump(scope .. ':total')
    end
    if state ~= 'a' and state ~= 'c' then redis.call('SADD', KEYS[3], rid) end
    redis.call('SADD', ARGV[1] .. cadre, rid)
    tasks[cadre] = (tasks[cadre] or 0) + 1
  end
end
-- Counters once per batch, not once per resident.
for name, n in pairs(inc) do redis.call('HINCRBY', KEYS[2], name, n) end
for cadre, n in pairs(tasks) do redis.call('HINCRBY', ARGV[1] .. '#', cadre, n) end
return fresh
"""

# Shared by the evidence and confirmation scripts: move `rid` from state `old` to `new` (counters,
# open set, milestones). `cur` is its ledger value. Needs KEYS r, n, open, t and `now`.
_ADVANCE = """
local function counter(name)
  return tonumber(redis.call('HGET', KEYS[2], name) or '0')
end
local function done(scope)
  return counter(scope .. ':a') + counter(scope .. ':c')
end
local function advance(rid, cur, new, now)
  local old = string.sub(cur, 1, 1)
  local must = string.sub(cur, 2, 2) == '1'
  local village, audience, cadre = string.match(string.sub(cur, 4), '^([^|]*)|([^|]*)|(.*)$')
  redis.call('HSET', KEYS[1], rid, new .. string.sub(cur, 2))
  local scopes = {'all', 'v:' .. village, 'au:' .. audience}
  if must then
    scopes[#scopes + 1] = 'must'
    scopes[#scopes + 1] = 'mv:' .. village
    scopes[#scopes + 1] = 'k:' .. cadre
  end
  for _, scope in ipairs(scopes) do
    redis.call('HINCRBY', KEYS[2], scope .. ':' .. old, -1)
    redis.call('HINCRBY', KEYS[2], scope .. ':' .. new, 1)
  end
  -- Whole-alert milestones only once every resident is registered (the fan-out is still adding some).
  local complete = redis.call('HEXISTS', KEYS[4], 'registered') == 1
  local reached = counter('all:n') + done('all')
  if complete and reached >= 0.9 * counter('all:total') then redis.call('HSETNX', KEYS[4], 'machine_90', now) end
  if must and (new == 'a' or new == 'c') then
    redis.call('SREM', KEYS[3], rid)
    if complete and done('must') >= counter('must:total') then redis.call('HSETNX', KEYS[4], 'must_100', now) end
    if done('mv:' .. village) >= counter('mv:' .. village .. ':total') then
      redis.call('HSETNX', KEYS[4], 'v:' .. village .. ':must_100', now)
    end
    if done('k:' .. cadre) >= counter('k:' .. cadre .. ':total') then
      redis.call('HSETNX', KEYS[4], 'k:' .. cadre .. ':must_100', now)
    end
  end
end
local rank = {p = 0, n = 1, a = 2, c = 3}
"""

# KEYS: r, n, open, t, e. ARGV: source, code, rank, target state ("" none), now, rid, rid, …
# → per rid: "2" state advanced, "1" evidence recorded only, "0" nothing new (replay, stale, unknown).
_EVIDENCE = (
    _ADVANCE
    + """
local out = {}
for i = 6, #ARGV do
  local rid = ARGV[i]
  local cur = redis.call('HGET', KEYS[1], rid)
  local result = '0'
  if cur then
    local field = rid .. '|' .. ARGV[1]
    local old = redis.call('HGET', KEYS[5], field)
    if not old or tonumber(string.sub(old, 1, 1)) < tonumber(ARGV[3]) then
      redis.call('HSET', KEYS[5], field, ARGV[3] .. ARGV[2])
      result = '1'
      local target = ARGV[4]
      if target ~= '' and rank[target] > rank[string.sub(cur, 1, 1)] then
        advance(rid, cur, target, ARGV[5])
        result = '2'
      end
    end
  end
  out[#out + 1] = result
end
return table.concat(out)
"""
)

# KEYS: r, n, open, t, e, c. ARGV: rid, confirmation JSON, outcome, now, late ("1"/"0")
# → "2" first confirmation, "1" a later one (outcome changed or note added), "x" not in the ledger.
_CONFIRM = (
    _ADVANCE
    + """
local rid = ARGV[1]
local cur = redis.call('HGET', KEYS[1], rid)
if not cur then return 'x' end
local previous = redis.call('HGET', KEYS[6], rid)
if previous then
  local old = cjson.decode(previous)['outcome']
  redis.call('HINCRBY', KEYS[2], 'outcome:' .. old, -1)
end
redis.call('HSET', KEYS[6], rid, ARGV[2])
redis.call('HINCRBY', KEYS[2], 'outcome:' .. ARGV[3], 1)
redis.call('HSET', KEYS[5], rid .. '|cadre', '1C')
if previous then return '1' end
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[2], 'late', 1) end
if rank[string.sub(cur, 1, 1)] < rank['c'] then advance(rid, cur, 'c', ARGV[4]) end
return '2'
"""
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One resident's line in the ledger."""

    resident: str
    state: str  # pending | notified | acknowledged | confirmed
    must_reach: bool
    village: str
    audience: str
    cadre: str

    @property
    def done(self) -> bool:
        return self.state in ("acknowledged", "confirmed")


@dataclass(frozen=True, slots=True)
class Confirmation:
    outcome: str
    by: str  # contact id (or "voice:{contact}" for a keypad confirmation)
    at: float
    note: str = ""
    late: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {"outcome": self.outcome, "by": self.by, "at": self.at, "note": self.note, "late": self.late},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Confirmation:
        d = json.loads(raw)
        return cls(d["outcome"], d["by"], float(d["at"]), d.get("note", ""), bool(d.get("late")))


@dataclass
class Counts:
    """The ledger's counters, parsed: `scope(name)` → {state: n, "total": n}."""

    raw: dict[str, int] = field(default_factory=dict)

    def scope(self, name: str) -> dict[str, int]:
        out = {state: self.raw.get(f"{name}:{code}", 0) for code, state in STATES.items()}
        out["total"] = self.raw.get(f"{name}:total", 0)
        return out

    def names(self, prefix: str) -> list[str]:
        """Scope names starting with `prefix` (e.g. "mv:" → the villages with must-reach residents)."""
        return sorted({k.rsplit(":", 1)[0][len(prefix) :] for k in self.raw if k.startswith(prefix)})

    def outcomes(self) -> dict[str, int]:
        return {o: self.raw.get(f"outcome:{o}", 0) for o in OUTCOMES}


OPEN_PAGE_SCANS: Final = 64  # SSCAN calls one page of open residents may take at most


def _cursor(cursor: str) -> tuple[int, int]:
    """Parse "{scan}.{skip}" → (scan, skip); "" → (0, 0). Raises ValueError for anything else."""
    if not cursor:
        return 0, 0
    scan, dot, skip = cursor.partition(".")
    if not dot or not scan.isdigit() or not skip.isdigit() or len(cursor) > 40:
        raise ValueError(cursor)
    return int(scan), int(skip)


def _entry(rid: str, raw: str) -> Entry:
    head, village, audience, cadre = raw.split("|", 3)
    return Entry(rid, STATES[head[0]], head[1] == "1", village, audience, cadre)


class Reach:
    """The reach ledger of one Redis namespace."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self.clock: Callable[[], float] = time.time  # injectable for tests of deadlines and timings
        self._register = redis.register_script(_REGISTER)
        self._evidence = redis.register_script(_EVIDENCE)
        self._confirm = redis.register_script(_CONFIRM)

    def key(self, alert_id: str, part: str) -> str:
        return self.keys.key("reach", alert_id, part)

    def _base_keys(self, alert_id: str) -> list[str]:
        return [self.key(alert_id, p) for p in ("r", "n", "open", "t", "e")]

    # -- writing ------------------------------------------------------------------------------------

    async def register(
        self,
        alert_id: str,
        audience: str,
        village: str,
        must_reach: bool,
        members: Sequence[tuple[str, str]],
        *,
        client: Any = None,
    ) -> int:
        """Enter residents (id, cadre id) reached as `audience` in `village`; returns how many were new.

        The first audience wins for counting; a must-reach audience later upgrades a resident to must-reach.
        """
        if not members:
            return 0
        args = [self.key(alert_id, "task:"), audience, "1" if must_reach else "0", village]
        args += [x for rid, cadre in members for x in (rid, cadre)]
        keys = [self.key(alert_id, "r"), self.key(alert_id, "n"), self.key(alert_id, "open")]
        if client is not None:  # queued on the caller's pipeline: its result comes from execute()
            await self._register(keys=keys, args=args, client=client)
            return 0
        return int(await self._register(keys=keys, args=args))

    async def record(
        self,
        alert_id: str,
        source: str,
        code: str,
        residents: Sequence[str],
        now: float | None = None,
        *,
        client: Any = None,
    ) -> str:
        """Record evidence `code` of `source` for residents; one result character per resident
        ("2" state advanced, "1" evidence only, "0" nothing new). With `client` (a pipeline) it is only
        queued on it: its result comes from execute().

        Raises:
            KeyError: an unknown source or code (a bug, not an input problem).
        """
        if not residents:
            return ""
        rank, target = EVIDENCE[source][code]
        args = [source, code, str(rank), target, f"{now or self.clock():.3f}", *residents]
        if client is not None:
            await self._evidence(keys=self._base_keys(alert_id), args=args, client=client)
            return ""
        return str(await self._evidence(keys=self._base_keys(alert_id), args=args))

    async def confirm(self, alert_id: str, resident: str, confirmation: Confirmation) -> str:
        """Record a cadre's confirmation: "2" the first, "1" a later one (kept: outcome and note updated),
        "x" the resident is not in this alert's ledger."""
        keys = [*self._base_keys(alert_id), self.key(alert_id, "c")]
        args = [
            resident,
            confirmation.to_json(),
            confirmation.outcome,
            f"{confirmation.at:.3f}",
            "1" if confirmation.late else "0",
        ]
        return str(await self._confirm(keys=keys, args=args))

    async def milestone(self, alert_id: str, name: str, when: float | None = None) -> bool:
        """Note the first time something happened (e.g. "first_sent"); True if this was the first."""
        return bool(await self.redis.hsetnx(self.key(alert_id, "t"), name, f"{when or self.clock():.3f}"))

    async def registered(self, alert_id: str) -> None:
        """Every resident of the alert is in the ledger (the fan-out finished): whole-alert milestones may
        now be reached, and any already reached while registering are noted now."""
        await self.milestone(alert_id, "registered")
        counts = await self.counts(alert_id)
        everyone, must = counts.scope("all"), counts.scope("must")
        if everyone["total"] and everyone["notified"] + everyone["acknowledged"] + everyone["confirmed"] >= (
            0.9 * everyone["total"]
        ):
            await self.milestone(alert_id, "machine_90")
        if must["total"] and must["acknowledged"] + must["confirmed"] >= must["total"]:
            await self.milestone(alert_id, "must_100")

    async def village_heard(self, alert_id: str, village: str, when: float | None = None) -> bool:
        """Note that a loudspeaker played in `village`; True the first time (its residents get evidence)."""
        return bool(
            await self.redis.hsetnx(self.key(alert_id, "heard"), village, f"{when or self.clock():.3f}")
        )

    # -- reading ------------------------------------------------------------------------------------

    async def counts(self, alert_id: str) -> Counts:
        raw = await self.redis.hgetall(self.key(alert_id, "n"))
        return Counts({str(k): int(v) for k, v in raw.items()})

    async def milestones(self, alert_id: str) -> dict[str, float]:
        raw = await self.redis.hgetall(self.key(alert_id, "t"))
        return {str(k): float(v) for k, v in raw.items()}

    async def heard(self, alert_id: str) -> dict[str, float]:
        raw = await self.redis.hgetall(self.key(alert_id, "heard"))
        return {str(k): float(v) for k, v in raw.items()}

    async def entry(self, alert_id: str, resident: str) -> Entry | None:
        raw = await self.redis.hget(self.key(alert_id, "r"), resident)
        return _entry(resident, str(raw)) if raw is not None else None

    async def entries(self, alert_id: str, residents: Sequence[str]) -> list[Entry]:
        """The ledger lines of these residents, in order; residents not in the ledger are left out."""
        if not residents:
            return []
        raw = await self.redis.hmget(self.key(alert_id, "r"), list(residents))
        return [_entry(rid, str(r)) for rid, r in zip(residents, raw, strict=True) if r is not None]

    async def evidence(self, alert_id: str, resident: str) -> dict[str, str]:
        """Source → best evidence code for one resident (for the cadre page and audits)."""
        fields = [f"{resident}|{source}" for source in EVIDENCE]
        raw = await self.redis.hmget(self.key(alert_id, "e"), fields)
        return {source: str(v)[1:] for source, v in zip(EVIDENCE, raw, strict=True) if v is not None}

    async def confirmations(self, alert_id: str, residents: Sequence[str]) -> dict[str, Confirmation]:
        if not residents:
            return {}
        raw = await self.redis.hmget(self.key(alert_id, "c"), list(residents))
        return {
            rid: Confirmation.from_json(r) for rid, r in zip(residents, raw, strict=True) if r is not None
        }

    async def open_residents(
        self, alert_id: str, batch_size: int = 1000, *, dedupe: bool = True
    ) -> AsyncIterator[list[Entry]]:
        """Stream the must-reach residents nobody has acknowledged or confirmed yet, in batches.

        SSCAN may return a member twice while the set shrinks; `dedupe` drops repeats at the cost of
        remembering every id — callers streaming a million pass False and tolerate repeats."""
        cursor = 0
        seen: set[str] = set()
        while True:
            scanned: Any = await self.redis.sscan(self.key(alert_id, "open"), cursor, count=batch_size)
            cursor, members = scanned
            ids = [m for m in map(str, members) if m not in seen]
            if dedupe:
                seen.update(ids)
            entries = [e for e in await self.entries(alert_id, ids) if not e.done]
            if entries:
                yield entries
            if cursor == 0:
                break

    async def open_page(self, alert_id: str, cursor: str = "", limit: int = 100) -> tuple[list[Entry], str]:
        """One page of the must-reach residents nobody has acknowledged or confirmed yet: at most `limit`,
        from `cursor` ("" = the first page), and the cursor of the next page ("" = this was the last).

        The cursor is "{SSCAN cursor}.{members of that scan batch already served}", so a page never
        returns more than `limit` and never skips a member it cut off. As with SSCAN, a member may be
        served twice while the set shrinks; one that stays open the whole time is served at least once.

        Raises:
            ValueError: a cursor this method did not make.
        """
        scan, skip = _cursor(cursor)
        ids: list[str] = []
        for _ in range(OPEN_PAGE_SCANS):  # a sparse set can give empty scan batches: bound the round trips
            scanned: Any = await self.redis.sscan(self.key(alert_id, "open"), scan, count=max(limit, 10))
            after, members = scanned
            batch = sorted(map(str, members))  # one batch is the same set of members each time: fix its order
            take = batch[skip : skip + limit - len(ids)]
            ids += take
            if skip + len(take) < len(batch):  # the page filled inside this batch: resume inside it
                return await self._open_entries(alert_id, ids), f"{scan}.{skip + len(take)}"
            scan, skip = int(after), 0
            if scan == 0 or len(ids) >= limit:
                break
        return await self._open_entries(alert_id, ids), "" if scan == 0 else f"{scan}.0"

    async def _open_entries(self, alert_id: str, ids: list[str]) -> list[Entry]:
        return [e for e in await self.entries(alert_id, ids) if not e.done]

    async def open_count(self, alert_id: str) -> int:
        return int(await self.redis.scard(self.key(alert_id, "open")))

    async def cadres(self, alert_id: str) -> dict[str, int]:
        """Cadre id ("" = residents without one) → how many must-reach residents are on their list."""
        raw = await self.redis.hgetall(self.key(alert_id, "task:#"))
        return {str(k): int(v) for k, v in raw.items()}

    async def task_residents(self, alert_id: str, cadre: str) -> list[str]:
        """The residents on a cadre's list for this alert (a cadre has tens, not thousands)."""
        return sorted(map(str, await self.redis.smembers(self.key(alert_id, f"task:{cadre}"))))

    async def on_task(self, alert_id: str, cadre: str, resident: str) -> bool:
        return bool(await self.redis.sismember(self.key(alert_id, f"task:{cadre}"), resident))
