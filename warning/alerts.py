"""Alerts in Redis: records, lifecycle state, and the append-only audit log.

alerts              HASH id → Alert JSON (the current version)
alerts:by_time      ZSET id by issue time (listing)
alert:{id}:ctl      HASH state, version, expires (epoch seconds): what workers check before sending
audit…              the hash-chained audit log (warning.audit: seq, prev, hash per entry; an index per
                    object), trimmed to about AUDIT_MAXLEN entries (XADD MAXLEN ~): the oldest go first
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from datetime import UTC, datetime

from redis.asyncio import Redis

from warning.audit import AuditLog
from warning.errors import AlertNotFound
from warning.i18n import t
from warning.model import Alert, AlertState
from warning.store import Keyspace

# The audit stream keeps about this many of its latest entries (XADD … MAXLEN ~ N: Redis trims whole
# nodes, so a few more stay). A million entries are some 200 MB at most; export older ones first.
AUDIT_MAXLEN = 1_000_000


def new_alert_id(now: datetime) -> str:
    """A CAP-style identifier that sorts by time and never collides: `W20261129T010203-3f9a1c`."""
    return f"W{now.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class AlertStore:
    """Reads and writes alerts and their audit trail."""

    def __init__(
        self, redis: Redis, keys: Keyspace, *, audit_maxlen: int = AUDIT_MAXLEN, secret: str = ""
    ) -> None:
        """`secret`: `server.secret` (the audit chain's key is derived from it, or from the random key
        kept in Redis when it is unset, as links.py does)."""
        self.redis = redis
        self.keys = keys
        self.audit_maxlen = audit_maxlen
        self.audit_log_store = AuditLog(redis, keys, secret=secret, maxlen=audit_maxlen)

    def _records(self) -> str:
        return self.keys.key("alerts")

    def control_key(self, alert_id: str) -> str:
        return self.keys.key("alert", alert_id, "ctl")

    async def get(self, alert_id: str) -> Alert:
        """The alert with this id.

        Raises:
            AlertNotFound: no such alert.
        """
        raw = await self.redis.hget(self._records(), alert_id)
        if raw is None:
            raise AlertNotFound(t("没有编号为 {id} 的预警", "no alert with id {id}", id=alert_id))
        return Alert.from_json(raw)

    async def find(self, alert_id: str) -> Alert | None:
        raw = await self.redis.hget(self._records(), alert_id)
        return Alert.from_json(raw) if raw is not None else None

    async def save(self, alert: Alert) -> None:
        """Store the alert and its control record (state, version, expiry) together."""
        expires = str(alert.expires.timestamp()) if alert.expires else ""
        control = ["state", alert.state.value, "version", str(alert.version), "expires", expires]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._records(), alert.id, alert.to_json())
            pipe.zadd(self.keys.key("alerts", "by_time"), {alert.id: alert.sent.timestamp()})
            pipe.hset(self.control_key(alert.id), items=list(control))
            await pipe.execute()

    async def set_state(self, alert: Alert, state: AlertState) -> Alert:
        """Move the alert to `state`; the control record changes in the same transaction."""
        changed = replace(alert, state=state)
        await self.save(changed)
        return changed

    async def recent(self, limit: int = 50) -> list[Alert]:
        ids = [str(i) for i in await self.redis.zrevrange(self.keys.key("alerts", "by_time"), 0, limit - 1)]
        if not ids:
            return []
        raw = await self.redis.hmget(self._records(), ids)
        return [Alert.from_json(r) for r in raw if r is not None]

    async def audit(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        obj: str,
        result: str,
        detail: str = "",
        ip: str | None = None,
    ) -> None:
        """Append an audit event to the hash chain; `ip` defaults to the client of the request served."""
        await self.audit_log_store.append(
            actor=actor, role=role, action=action, obj=obj, result=result, detail=detail, ip=ip
        )

    async def audit_log(self, obj: str | None = None, limit: int = 1000) -> list[dict[str, str]]:
        """Audit events oldest first: those about `obj` (exact, from its index), or the log's first `limit`."""
        log = self.audit_log_store
        events = await (log.oldest(limit) if obj is None else log.for_object(obj, limit))
        return [{k: v for k, v in e.items() if k != "id"} for e in events]


def describe(alert: Alert) -> str:
    """One line for logs and the CLI."""
    return json.dumps(
        {
            "id": alert.id,
            "event": alert.event,
            "level": alert.level.value,
            "areas": list(alert.areas),
            "state": alert.state.value,
        },
        ensure_ascii=False,
    )
