"""The two-person rule and every alert's moves: who did what to it, when, and why.

    alert:{id}:moves    LIST of Move JSON, oldest first (a handful per alert: draft, submit, return,
                        revise, approve, reject, issue, update, cancel)
    alert:{id}:deciding STRING held (NX, expiring) while one approve/return/reject/revise runs, so two
                        approvers clicking at once never both act
    alerts:waiting      ZSET id → when it last started waiting: the alerts pending approval now, and
                        the issued alerts whose proposed update waits
    alert:{id}:proposal STRING Proposal JSON: an update of an issued alert waiting for approval (the
                        request's fields, who proposed it, when, its texts as rendered for the reviewer)

The rule (GOV.UK Emergency Alerts style): an Actual alert at or above `[approval] level` waits as
pending_approval until someone other than whoever submitted or edited it approves it; a drill does not
wait when `drills_self_approve` (its submitter's word is the approval). Deciding who may approve reads
the alert's own moves, never a scan of the whole audit log.

An update of an issued alert is under the same rule, judged on the NEW level: while it waits the issued
version keeps going out unchanged and the update is kept as the alert's one Proposal; its approver must
be someone other than whoever proposed it (the first version's submitter may approve it).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from warning.config import ApprovalSettings
from warning.errors import AlertError, FieldError, MissingField
from warning.i18n import t
from warning.model import Level
from warning.store import Keyspace

REASON_MAX = 500  # characters of a return-for-edit or reject reason
DECIDING_SECONDS = 30  # a decision still held after this long belongs to a dead process
MOVES_MAX = 200  # moves kept per alert (an alert has a handful; this only bounds a runaway loop)
# Moves whose actor may not approve the alert: they wrote it.
AUTHORING = frozenset({"draft", "submit", "revise"})
# The CLI on the host is the administrator's own tool (`warning approve`), not a second web user.
HOST_ACTOR = "cli"


@dataclass(frozen=True)
class Move:
    """One step in an alert's life: `action` by `actor` (in `role`) at `at`, with a reason where one is due."""

    action: str
    actor: str
    role: str
    at: datetime
    reason: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "action": self.action,
                "actor": self.actor,
                "role": self.role,
                "at": self.at.isoformat(),
                "reason": self.reason,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Move:
        d = json.loads(raw)
        return cls(d["action"], d["actor"], d["role"], datetime.fromisoformat(d["at"]), d.get("reason", ""))


class Moves:
    """Reads and appends an alert's moves."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    def key(self, alert_id: str) -> str:
        return self.keys.key("alert", alert_id, "moves")

    def waiting_key(self) -> str:
        return self.keys.key("alerts", "waiting")

    async def add(
        self, alert_id: str, action: str, *, actor: str, role: str, reason: str = "", waiting: bool = False
    ) -> Move:
        """Append a move, timed now; `waiting`: the alert is pending approval after it (else it is not)."""
        move = Move(action, actor, role, datetime.now(UTC), reason)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self.key(alert_id), move.to_json())
            pipe.ltrim(self.key(alert_id), -MOVES_MAX, -1)
            if waiting:
                pipe.zadd(self.waiting_key(), {alert_id: move.at.timestamp()})
            else:
                pipe.zrem(self.waiting_key(), alert_id)
            await pipe.execute()
        return move

    async def waiting(self, limit: int = 1000) -> list[str]:
        """Ids of the alerts pending approval now, longest waiting first."""
        return [str(i) for i in await self.redis.zrange(self.waiting_key(), 0, limit - 1)]

    @asynccontextmanager
    async def deciding(self, alert_id: str, *, wait: float = 0.0) -> AsyncIterator[None]:
        """Hold the alert's decision for the block, waiting up to `wait` seconds for another decision on
        it to end (a cancel waits for an approval in flight rather than racing it).

        Raises:
            AlertError: another decision on this alert is running (try again in a moment).
        """
        key, mine = self.keys.key("alert", alert_id, "deciding"), secrets.token_hex(8)
        deadline = time.monotonic() + wait
        while not await self.redis.set(key, mine, nx=True, ex=DECIDING_SECONDS):
            if time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                continue
            raise AlertError(
                t(
                    "预警 {id} 正由另一人处理，请稍后刷新再试",
                    "someone else is acting on alert {id} right now: reload and try again",
                    id=alert_id,
                )
            )
        try:
            yield
        finally:
            if await self.redis.get(key) == mine:
                await self.redis.delete(key)

    async def of(self, alert_id: str) -> list[Move]:
        """The alert's moves, oldest first (empty for an unknown id)."""
        return [Move.from_json(raw) for raw in await self.redis.lrange(self.key(alert_id), 0, -1)]


@dataclass(frozen=True)
class Proposal:
    """An update of an issued alert waiting for a second person: `request` holds the update's fields as
    the API's JSON names them, `version` the issued version it replaces, `texts` what it would send."""

    id: str
    version: int
    request: dict[str, Any]
    actor: str
    role: str
    at: datetime
    texts: dict[str, str]

    def to_json(self) -> str:
        return json.dumps(self.public() | {"texts": self.texts}, ensure_ascii=False, separators=(",", ":"))

    def public(self) -> dict[str, Any]:
        """The proposal as the API answers it (without the rendered texts)."""
        return {
            "id": self.id,
            "version": self.version,
            "request": self.request,
            "proposed_by": self.actor,
            "role": self.role,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_json(cls, raw: str | bytes) -> Proposal:
        d = json.loads(raw)
        return cls(
            d["id"],
            int(d["version"]),
            dict(d["request"]),
            d["proposed_by"],
            d["role"],
            datetime.fromisoformat(d["at"]),
            dict(d.get("texts", {})),
        )


class Proposals:
    """The one waiting proposed update of each issued alert."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    def key(self, alert_id: str) -> str:
        return self.keys.key("alert", alert_id, "proposal")

    async def get(self, alert_id: str) -> Proposal | None:
        raw = await self.redis.get(self.key(alert_id))
        return Proposal.from_json(raw) if raw else None

    async def put(self, alert_id: str, proposal: Proposal) -> None:
        """Keep `proposal` as the alert's waiting update, replacing any earlier one."""
        await self.redis.set(self.key(alert_id), proposal.to_json())

    async def clear(self, alert_id: str) -> bool:
        """Drop the alert's waiting update; whether there was one."""
        return bool(await self.redis.delete(self.key(alert_id)))


def needs_approval(settings: ApprovalSettings, level: Level, *, exercise: bool) -> bool:
    """Whether an alert submitted at `level` must wait for a second person's approval."""
    if settings.level == "off" or level.rank < Level(settings.level).rank:
        return False
    return not (exercise and settings.drills_self_approve)


def check_approver(moves: Sequence[Move], actor: str, *, alert_id: str) -> None:
    """Refuse an approval by whoever submitted or edited the alert (the CLI on the host excepted).

    Raises:
        AlertError: `actor` wrote this alert; another approver must approve it.
    """
    if actor == HOST_ACTOR:
        return
    if any(m.action in AUTHORING and m.actor == actor for m in moves):
        raise AlertError(
            t(
                "两人规则：预警 {id} 由您（{a}）提交或修改，须由另一位审批人批准",
                "two-person rule: you ({a}) submitted this alert ({id}); another approver must approve it",
                a=actor,
                id=alert_id,
            )
        )


def check_proposal_approver(proposal: Proposal, actor: str, *, alert_id: str) -> None:
    """Refuse an approval of a proposed update by whoever proposed it (the CLI on the host excepted).

    Raises:
        AlertError: `actor` proposed this update; another approver must approve it.
    """
    if actor != HOST_ACTOR and proposal.actor == actor:
        raise AlertError(
            t(
                "两人规则：预警 {id} 的这次更新由您（{a}）提出，须由另一位审批人批准",
                "two-person rule: you ({a}) proposed this update of alert {id}; another approver must "
                "approve it",
                a=actor,
                id=alert_id,
            )
        )


def require_reason(reason: str) -> str:
    """The reason, trimmed: required to return an alert for edit or to reject it.

    Raises:
        MissingField: no reason (blank counts as none), naming `reason`.
        FieldError: longer than REASON_MAX characters.
    """
    reason = reason.strip()
    if not reason:
        raise MissingField(
            t(
                "请写明退回或驳回的理由（reason），提交人会看到",
                "give a reason (reason) for returning or rejecting: the submitter sees it",
            ),
            field="reason",
        )
    if len(reason) > REASON_MAX:
        raise FieldError(
            t(
                "理由最多 {n} 个字",
                "the reason may be at most {n} characters",
                n=REASON_MAX,
            ),
            field="reason",
        )
    return reason


def reason_field(body: Mapping[str, Any]) -> str:
    """The `reason` of a return/reject request body (`{"reason": "…"}`); "" when absent (then refused by
    `require_reason`, which the service applies).

    Raises:
        FieldError: an unknown field, or a reason that is not a string.
    """
    for key in body:
        if key != "reason":
            raise FieldError(
                t("未知字段 {f}（可用：reason）", "unknown field {f} (use reason)", f=key), field=key
            )
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise FieldError(t("reason 应为文字", "reason must be text"), field="reason")
    return reason
