"""Delivery state in Redis: the queues, per-recipient states and counters, moved only by Lua scripts.

Per alert version and channel (DESIGN §3.2):
    alert:{id}:v{n}:d:{channel}   HASH recipient → state code (one field per delivery, never a key each)
    alert:{id}:v{n}:n:{channel}   HASH state name → count, kept as states change (views never scan)
    q:{channel}:hi | q:{channel}:lo   STREAMS of batches (red/orange in hi), consumer group "workers"
    alert:{id}:v{n}:ledgers       SET of the version's ledgers (`sms`, `sms.task`, `voice.esc2`, …)
    retry:{channel}               ZSET due time → batch waiting for its backoff
    reconcile:{channel}           ZSET due time → ambiguous sends to look up at the provider
    dead:{channel}                STREAM of dead-lettered batches (permanent failures, and bugs)

A recipient is queued at most once per (alert, version, channel) — `HSETNX` is the idempotency key
`{alert}:{version}:{channel}:{recipient}` — so re-issuing, retrying or restarting never queues twice.
States only move forward; every move and its counters change in one script, atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis

from warning.store import Keyspace

GROUP: Final = "workers"

# State codes stored per recipient, and the names counters and views use.
STATES: Final = {
    "q": "queued",
    "r": "retrying",
    "s": "sending",
    "S": "sent",
    "D": "delivered",
    "A": "ambiguous",
    "F": "failed",
    "X": "expired",
    "C": "cancelled",
    "L": "dead",
    "N": "no_address",
}
CODES: Final = {name: code for code, name in STATES.items()}
TERMINAL: Final = frozenset("SDAFXCLN")  # nothing more will be sent for these
PENDING: Final = frozenset("qrs")

# Which moves are allowed: new state → states it may come from. Forward only: a late "sent" never
# overwrites "delivered", and nothing leaves failed/expired/cancelled except a dead letter's requeue.
_MOVES = {
    "s": "qr",
    # S → r: a voice call that was busy or unanswered is placed again; A → r: an ambiguous send the
    # provider has no record of is resent (once reconciled, never blindly).
    "r": "sSA",
    "S": "sA",  # A → S: reconciliation (or a "queued"/"sent" receipt) found the provider has it
    # r → D: a device reports `played` for a publish we thought had failed; F → D: a late "delivered"
    # receipt is stronger evidence than an earlier "undelivered".
    "D": "rsSAF",
    "A": "s",
    "F": "qrsSA",
    "X": "qrsA",  # A → X / A → C: an ambiguous send the provider never got, after expiry or cancel
    "C": "qrA",
    "L": "qsr",
    "q": "LF",  # a dead letter (or a permanent failure the operator fixed) requeued
}

_LUA_MOVES = "{" + ",".join(f"['{new}']='{old}'" for new, old in _MOVES.items()) + "}"
_LUA_NAMES = "{" + ",".join(f"['{c}']='{n}'" for c, n in STATES.items()) + "}"

# KEYS: states, counts. ARGV: recipient, new state, recipient, new state, …  → "1"/"0" per pair.
_TRANSITION = f"""
local moves = {_LUA_MOVES}
local names = {_LUA_NAMES}
local out = {{}}
for i = 1, #ARGV, 2 do
  local rid, new = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], rid)
  if old and old ~= new and string.find(moves[new], old, 1, true) then
    redis.call('HSET', KEYS[1], rid, new)
    redis.call('HINCRBY', KEYS[2], names[old], -1)
    redis.call('HINCRBY', KEYS[2], names[new], 1)
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
return table.concat(out)
"""

# KEYS: states, counts, stream, ledgers. ARGV: the batch JSON without recipients, then its recipients as one
# JSON array of [id, address, language, text?] (one argument, not four per recipient: packing hundreds
# of thousands of arguments was most of the client's CPU in a fan-out). An empty address records
# "no_address". Queues only recipients never seen for this alert version; ARGV[3] (the ledger) is noted in
# the version's ledger set, so cancel and expiry settle every ledger (task SMS, escalation calls, …).
_ENQUEUE = """
local fresh = {}
local queued, skipped = 0, 0
for _, item in ipairs(cjson.decode(ARGV[2])) do
  local rid, address = item[1], item[2]
  if address == '' then
    if redis.call('HSETNX', KEYS[1], rid, 'N') == 1 then skipped = skipped + 1 end
  elseif redis.call('HSETNX', KEYS[1], rid, 'q') == 1 then
    fresh[#fresh + 1] = cjson.encode(item)
    queued = queued + 1
  end
end
if queued > 0 then
  local batch = string.sub(ARGV[1], 1, -2) .. ',"r":[' .. table.concat(fresh, ',') .. ']}'
  redis.call('XADD', KEYS[3], '*', 'b', batch)
  redis.call('HINCRBY', KEYS[2], 'queued', queued)
end
if queued + skipped > 0 then redis.call('SADD', KEYS[4], ARGV[3]) end
if skipped > 0 then redis.call('HINCRBY', KEYS[2], 'no_address', skipped) end
return {queued, skipped}
"""

# KEYS: states, counts, control. ARGV: the mode ("0" a warning, "1" a stop command, "2" an all-clear),
# the batch's alert version, rid, rid, … Decides, atomically with a cancel, an update or the clock, what
# a worker may send now: one code per recipient: "s" send, "C" cancelled now (cancelled, or superseded by
# a newer version), "X" expired now, "-" skip (already sent or finished). A stop goes out for a cancelled
# alert; an all-clear only for a cancelled one, until the control hash's `clear_until` (it may outlive
# the alert's own expiry: the all-clear of a warning cancelled just before it expired still goes out).
# "a": the recipient is `sending` already — a worker was cut off mid-call (killed, or Redis went away) —
# so it may have been sent: the worker reconciles it (looks it up) instead of sending it blindly again,
# and, if the alert ended meanwhile, settles it as cancelled/expired only if the provider never got it.
_VERDICT = """
local state = redis.call('HGET', KEYS[3], 'state')
local current = redis.call('HGET', KEYS[3], 'version')
local expires = tonumber(redis.call('HGET', KEYS[3], 'expires') or '')
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local target = 's'
if ARGV[1] == '2' then
  local until_ = tonumber(redis.call('HGET', KEYS[3], 'clear_until') or '')
  if state ~= 'cancelled' then target = 'C' elseif not until_ or now >= until_ then target = 'X' end
else
  if state ~= 'issued' and not (ARGV[1] == '1' and state == 'cancelled') then target = 'C' end
  if ARGV[1] == '0' and current and current ~= ARGV[2] then target = 'C' end
  if expires and now >= expires then target = 'X' end
end
"""

# The same arguments as the claim, without recipients: "s" while the batch may be sent, else the state
# ("C"/"X") its recipients would be settled in. Read-only: the worker asks before spending rate tokens.
_PEEK = _VERDICT + "return target"

_CLAIM = f"""
local moves = {_LUA_MOVES}
local names = {_LUA_NAMES}
{_VERDICT}
local out = {{}}
for i = 3, #ARGV do
  local rid = ARGV[i]
  local old = redis.call('HGET', KEYS[1], rid)
  if old == 's' then
    out[#out + 1] = 'a'  -- claimed before by a worker cut off mid-call: it may have gone, reconcile it
  elseif old and string.find(moves[target], old, 1, true) then
    redis.call('HSET', KEYS[1], rid, target)
    redis.call('HINCRBY', KEYS[2], names[old], -1)
    redis.call('HINCRBY', KEYS[2], names[target], 1)
    out[#out + 1] = target
  else
    out[#out + 1] = '-'
  end
end
return table.concat(out)
"""


@dataclass(frozen=True, slots=True)
class Recipient:
    id: str  # "r:{resident}", "c:{contact}", "s:{device}"
    address: str  # E.164 or device id; "" when the recipient has none for this channel
    language: str
    text: str = ""  # only for templates with personal fields; otherwise the text is rendered once per batch


@dataclass(frozen=True, slots=True)
class Batch:
    """A stream entry: recipients of one (alert, version, channel, audience, village), plus retry state."""

    alert_id: str
    version: int
    channel: str
    audience: str
    village: str
    recipients: tuple[Recipient, ...]
    attempt: int = 1
    action: str = "play"
    unexpected: int = 0  # adapter bugs so far; such failures are retried at most once
    resent: int = 0  # 1 once an ambiguous send the provider had no record of was sent again

    @property
    def ledger(self) -> str:
        """The state hash this batch belongs to: the channel, or e.g. `speaker.stop` for stop commands."""
        return self.channel if self.action == "play" else f"{self.channel}.{self.action}"

    def header(self) -> str:
        """The batch as JSON without its recipients (the enqueue script appends those)."""
        return json.dumps(
            {
                "a": self.alert_id,
                "v": self.version,
                "c": self.channel,
                "au": self.audience,
                "vil": self.village,
                "t": self.attempt,
                "act": self.action,
                "u": self.unexpected,
                **({"rs": self.resent} if self.resent else {}),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def recipients_json(self) -> str:
        recipients = [[r.id, r.address, r.language, *([r.text] if r.text else [])] for r in self.recipients]
        return json.dumps(recipients, ensure_ascii=False, separators=(",", ":"))

    def to_json(self) -> str:
        return self.header()[:-1] + ',"r":' + self.recipients_json() + "}"

    @classmethod
    def from_json(cls, raw: str | bytes) -> Batch:
        d = json.loads(raw)
        return cls(
            alert_id=d["a"],
            version=int(d["v"]),
            channel=d["c"],
            audience=d["au"],
            village=d["vil"],
            recipients=tuple(Recipient(*r) for r in d["r"]),
            attempt=int(d.get("t", 1)),
            action=d.get("act", "play"),
            unexpected=int(d.get("u", 0)),
            resent=int(d.get("rs", 0)),
        )

    def with_recipients(self, recipients: Sequence[Recipient], **changes: Any) -> Batch:
        fields = {**{f: getattr(self, f) for f in self.__dataclass_fields__}, **changes}
        fields["recipients"] = tuple(recipients)
        return Batch(**fields)


@dataclass
class ChannelCounts:
    """Counts per state for one channel of one alert version."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return sum(self.counts.get(STATES[c], 0) for c in PENDING)

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)


class Deliveries:
    """The delivery ledger and queues of one Redis namespace."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._transition = redis.register_script(_TRANSITION)
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._peek = redis.register_script(_PEEK)

    # -- keys ---------------------------------------------------------------------------------------

    def states_key(self, alert_id: str, version: int, channel: str) -> str:
        return self.keys.key("alert", alert_id, f"v{version}", "d", channel)

    def counts_key(self, alert_id: str, version: int, channel: str) -> str:
        return self.keys.key("alert", alert_id, f"v{version}", "n", channel)

    def control_key(self, alert_id: str) -> str:
        return self.keys.key("alert", alert_id, "ctl")

    def stream_key(self, channel: str, urgent: bool) -> str:
        return self.keys.key("q", channel, "hi" if urgent else "lo")

    def ledgers_key(self, alert_id: str, version: int) -> str:
        return self.keys.key("alert", alert_id, f"v{version}", "ledgers")

    def retry_key(self, channel: str) -> str:
        return self.keys.key("retry", channel)

    def reconcile_key(self, channel: str) -> str:
        return self.keys.key("reconcile", channel)

    def dead_key(self, channel: str) -> str:
        return self.keys.key("dead", channel)

    # -- writing ------------------------------------------------------------------------------------

    async def enqueue(self, batch: Batch, *, urgent: bool) -> tuple[int, int]:
        """Queue the batch's recipients not yet queued for this alert version; return (queued, no_address)."""
        queued, skipped = await self._enqueue(
            keys=self._enqueue_keys(batch, urgent), args=self._enqueue_args(batch)
        )
        return int(queued), int(skipped)

    async def enqueue_on(self, pipe: Any, batch: Batch, *, urgent: bool) -> None:
        """`enqueue` on the caller's pipeline; its (queued, no_address) comes from `pipe.execute()`."""
        await self._enqueue(
            keys=self._enqueue_keys(batch, urgent), args=self._enqueue_args(batch), client=pipe
        )

    async def enqueue_many(self, batches: Sequence[Batch], *, urgent: bool) -> dict[str, int]:
        """`enqueue` for many small batches in one round trip; returns queued per ledger."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for batch in batches:
                await self.enqueue_on(pipe, batch, urgent=urgent)
            results = await pipe.execute()
        queued: dict[str, int] = {}
        for batch, (count, _) in zip(batches, results, strict=True):
            queued[batch.ledger] = queued.get(batch.ledger, 0) + int(count)
        return queued

    def _enqueue_keys(self, batch: Batch, urgent: bool) -> list[str]:
        return [
            self.states_key(batch.alert_id, batch.version, batch.ledger),
            self.counts_key(batch.alert_id, batch.version, batch.ledger),
            self.stream_key(batch.channel, urgent),
            self.ledgers_key(batch.alert_id, batch.version),
        ]

    @staticmethod
    def _enqueue_args(batch: Batch) -> list[str]:
        return [batch.header(), batch.recipients_json(), batch.ledger]

    def _claim_keys(self, batch: Batch) -> list[str]:
        return [
            self.states_key(batch.alert_id, batch.version, batch.ledger),
            self.counts_key(batch.alert_id, batch.version, batch.ledger),
            self.control_key(batch.alert_id),
        ]

    @staticmethod
    def _claim_args(batch: Batch) -> list[str]:
        return [{"stop": "1", "clear": "2"}.get(batch.action, "0"), str(batch.version)]

    async def claim(self, batch: Batch) -> str:
        """Mark the batch's recipients `sending` if the alert is live; one decision code per recipient."""
        args = [*self._claim_args(batch), *(r.id for r in batch.recipients)]
        return str(await self._claim(keys=self._claim_keys(batch), args=args))

    async def verdict(self, batch: Batch) -> str:
        """What a claim would decide for the batch now, changing nothing: "s" (may send), "C" or "X"."""
        return str(await self._peek(keys=self._claim_keys(batch), args=self._claim_args(batch)))

    async def ledgers(self, alert_id: str, version: int) -> list[str]:
        """Every ledger anything was queued in for the alert version, sorted."""
        return sorted(str(m) for m in await self.redis.smembers(self.ledgers_key(alert_id, version)))

    async def move(
        self,
        alert_id: str,
        version: int,
        channel: str,
        moves: Sequence[tuple[str, str]],
        *,
        client: Any = None,
    ) -> str:
        """Apply (recipient, new state code) moves that the state machine allows; "1"/"0" per move.
        With `client` (a pipeline) the move is only queued on it: its result comes from execute()."""
        if not moves:
            return ""
        keys = [self.states_key(alert_id, version, channel), self.counts_key(alert_id, version, channel)]
        args = [x for rid, code in moves for x in (rid, code)]
        if client is not None:
            await self._transition(keys=keys, args=args, client=client)
            return ""
        return str(await self._transition(keys=keys, args=args))

    # -- reading ------------------------------------------------------------------------------------

    async def counts(self, alert_id: str, version: int, channels: Sequence[str]) -> dict[str, ChannelCounts]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.hgetall(self.counts_key(alert_id, version, channel))
            raw = await pipe.execute()
        return {
            channel: ChannelCounts({str(k): int(v) for k, v in counts.items() if int(v)})
            for channel, counts in zip(channels, raw, strict=True)
        }

    async def states_of(self, batch: Batch) -> dict[str, str]:
        """The current state codes of a batch's recipients (absent ones are left out)."""
        ids = [r.id for r in batch.recipients]
        if not ids:
            return {}
        codes = await self.redis.hmget(self.states_key(batch.alert_id, batch.version, batch.ledger), ids)
        return {rid: str(code) for rid, code in zip(ids, codes, strict=True) if code is not None}

    async def state(self, alert_id: str, version: int, channel: str, recipient: str) -> str | None:
        code = await self.redis.hget(self.states_key(alert_id, version, channel), recipient)
        return STATES.get(str(code)) if code else None

    async def states(self, alert_id: str, version: int, channel: str) -> dict[str, str]:
        """Every recipient's state for one channel (tests and small reports; large views use counts)."""
        raw = await self.redis.hgetall(self.states_key(alert_id, version, channel))
        return {str(k): STATES[str(v)] for k, v in raw.items()}
