"""The loudspeaker playback loop: a command is published again until its device reports it played or
failed, the alert is cancelled (or updated), or it expires — so a broker that lost it, or a device that
was offline, still gets it. The command id is derived from the delivery, so devices never play twice.

    speaker:unacked   ZSET  [delivery key, audience] as JSON → when to publish again
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from warning.alerts import AlertStore
from warning.channels.base import Channel, DeliveryResult, Message, Outcome
from warning.deliveries import Batch, Deliveries, Recipient
from warning.errors import DeliveryError
from warning.fanout import ALL_CLEAR, ALL_CLEAR_ACTION, Texts
from warning.model import AlertState

log = logging.getLogger(__name__)

_OPEN = ("sent", "ambiguous")  # published, not yet reported played or failed


class Playback:
    def __init__(
        self, deliveries: Deliveries, alerts: AlertStore, texts: Texts, *, republish_after: float, repeat: int
    ) -> None:
        self.deliveries = deliveries
        self.alerts = alerts
        self.texts = texts
        self.republish_after = republish_after
        self.repeat = repeat
        self.key = deliveries.keys.key("speaker", "unacked")

    async def track(self, batch: Batch, sent: Sequence[tuple[Recipient, DeliveryResult]]) -> None:
        """Commands just acknowledged by the broker (PUBACK): watch them until the devices report."""
        due = time.time() + self.republish_after
        members = {
            json.dumps([f"{batch.alert_id}:{batch.version}:{batch.ledger}:{r.id}", batch.audience]): due
            for r, _ in sent
        }
        if members:
            await self.deliveries.redis.zadd(self.key, members)

    async def republish_due(self, channel: Channel, limit: int = 500) -> int:
        """Publish again every watched command that is due and still open; returns how many went out.

        A round is skipped while the broker is unreachable (nothing would go out, and each attempt would
        wait for a connection); the due commands of a round are published concurrently."""
        try:
            await channel.check()
        except DeliveryError:
            return 0
        now = time.time()
        due = await self.deliveries.redis.zrangebyscore(self.key, "-inf", now, start=0, num=limit)
        members: list[str] = []
        messages: list[Message] = []
        for member in map(str, due):
            key, audience = json.loads(member)
            message = await self._message(key, audience)
            if message is None:
                await self.deliveries.redis.zrem(self.key, member)
            else:
                members.append(member)
                messages.append(message)
        republished = 0
        for member, result in zip(members, await channel.send(messages), strict=True):
            if result.outcome is Outcome.EXPIRED:
                await self.deliveries.redis.zrem(self.key, member)
                continue
            await self.deliveries.redis.zadd(self.key, {member: now + self.republish_after})
            if result.outcome is Outcome.SENT:
                republished += 1
        if republished:
            log.info("loudspeaker commands republished", extra={"count": republished})
        return republished

    async def _message(self, key: str, audience: str) -> Message | None:
        """The command to publish again, or None when it needs no more publishing."""
        alert_id, version, ledger, recipient = key.split(":", 3)
        if await self.deliveries.state(alert_id, int(version), ledger, recipient) not in _OPEN:
            return None  # played, failed, cancelled, expired
        alert = await self.alerts.find(alert_id)
        channel, _, action = ledger.partition(".")
        action = action or "play"
        if alert is None or alert.expired_at(datetime.now(UTC)):
            return None
        if action == "play" and (alert.state is not AlertState.ISSUED or alert.version != int(version)):
            return None  # cancelled or superseded: a `stop` (or the new version) is on its way instead
        if action == ALL_CLEAR_ACTION and alert.state is not AlertState.CANCELLED:
            return None
        # A stop has no text; an all-clear reads the alert's "allclear" texts, whoever it goes to.
        text_of = {"play": audience, ALL_CLEAR_ACTION: ALL_CLEAR}.get(action)
        text = (
            "" if text_of is None else await self.texts.get(alert_id, int(version), text_of, channel, "zh-CN")
        )
        return Message(
            key=key,
            recipient=recipient,
            address=recipient.removeprefix("s:"),
            text=text,
            alert_id=alert_id,
            version=int(version),
            level=alert.level,
            exercise=alert.exercise,
            expires=alert.expires,
            action=action,
            repeat=self.repeat,
        )
