"""From provider outcomes to the ledgers: every callback, ack, keypress, reply and confirmation lands here.

Each entry point moves the delivery ledger (forward only) and records the reach evidence it proves for
the resident, so duplicate or reordered callbacks change nothing the second time. Used by the workers
(what was sent), the loudspeaker channel (device acks) and the web hooks and pages (everything else).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from warning.broadcast import Broadcaster
from warning.channels.base import DeliveryResult
from warning.deliveries import Batch, Recipient
from warning.model import Alert, AlertState
from warning.phone import mask
from warning.reach import OUTCOMES, Confirmation
from warning.replay import REPLAY_WINDOW

log = logging.getLogger(__name__)

# Channels whose deliveries to residents are reach evidence, by the ledger's name.
RESIDENT_SOURCES = frozenset({"sms", "voice", "wechat"})
_REMEMBER = 3 * 86400  # seconds a provider message id / phone → delivery mapping is kept
# Twilio CallStatus → final: answered (completed) or not (retry, then failed).
_CALL_UNANSWERED = frozenset({"busy", "no-answer", "failed", "canceled"})


class ForbiddenTask(Exception):
    """A cadre tried to touch a resident not on their list for this alert (→ 403, audited)."""


class ClosedTask(Exception):
    """The alert is over (cancelled or expired): its links no longer accept anything (→ 410)."""


def split_key(key: str) -> tuple[str, int, str, str] | None:
    """A delivery key `{alert}:{version}:{ledger}:{recipient}` → its parts, or None if malformed."""
    parts = key.split(":", 3)
    if len(parts) != 4 or not parts[1].isdigit() or not parts[3]:
        return None
    return parts[0], int(parts[1]), parts[2], parts[3]


class Evidence:
    def __init__(self, broadcaster: Broadcaster) -> None:
        self.service = broadcaster
        self.reach = broadcaster.reach
        self.deliveries = broadcaster.deliveries
        self.redis = broadcaster.deliveries.redis
        self.keys = broadcaster.deliveries.keys
        self.voice_attempts = broadcaster.settings.voice.max_attempts
        self.voice_retry_after = broadcaster.settings.voice.retry_after

    def _key(self, *parts: str) -> str:
        return self.keys.key("evidence", *parts)

    # -- workers ------------------------------------------------------------------------------------

    async def on_sent(self, batch: Batch, accepted: Sequence[tuple[Recipient, DeliveryResult]]) -> None:
        """The provider accepted these messages: first-message milestone, push evidence, id mappings."""
        if not accepted:
            return
        await self.reach.milestone(batch.alert_id, "first_sent")
        residents = [r for r, _ in accepted if r.id.startswith("r:")]
        if batch.action != "play" or not residents or batch.channel not in RESIDENT_SOURCES:
            return
        await self.reach.record(batch.alert_id, batch.channel, "S", [r.id[2:] for r in residents])
        async with self.redis.pipeline(transaction=False) as pipe:
            for recipient, result in accepted:
                if not recipient.id.startswith("r:"):
                    continue
                key = f"{batch.alert_id}:{batch.version}:{batch.ledger}:{recipient.id}"
                if batch.channel == "wechat" and result.provider_id:
                    pipe.set(self._key("wechat", result.provider_id), key, ex=_REMEMBER)
                if batch.channel == "sms":
                    pipe.hset(self._key("phones"), recipient.address, key)
                if batch.channel == "voice":
                    redial = [batch.audience, batch.village, recipient.language, recipient.address]
                    pipe.set(self._key("redial", key), json.dumps(redial), ex=_REMEMBER)
            await pipe.execute()
        if batch.channel == "wechat":
            # Results that overtook us (see `wechat_result`), fetched for the whole batch at once.
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, result in accepted:
                    pipe.getdel(self._key("wechat-early", result.provider_id))
                early = await pipe.execute()
            for (recipient, _), code in zip(accepted, early, strict=True):
                if code is not None:
                    await self.delivery(
                        f"{batch.alert_id}:{batch.version}:{batch.ledger}:{recipient.id}", str(code)
                    )

    # -- provider receipts --------------------------------------------------------------------------

    async def delivery(self, key: str, code: str, *, first_seen: str = "") -> bool:
        """A receipt: move the delivery to `code` (S, D or F) and record it for the resident. False if
        unknown. An S ("queued", "sent") moves only a send the worker recorded as ambiguous.

        `first_seen` (optional): the provider's replay-guard key for this receipt (see
        warning.web.signatures.first_time); it is set here, in the same round trip as the move for a
        delivered / failed receipt (a replay moves nothing: both scripts are idempotent), or first and
        alone for "S". False is never returned for a replay: it is a known delivery."""
        parts = split_key(key)
        if parts is None:
            return False
        alert_id, version, ledger, recipient = parts
        resident = recipient.startswith("r:") and ledger in RESIDENT_SOURCES
        if code != "S":
            # Delivered / failed: the replay guard, the ledger's move and the resident's evidence do not
            # depend on each other (each script applies only what its state machine allows; a second
            # "delivered" changes nothing), so one round trip for all three.
            async with self.redis.pipeline(transaction=False) as pipe:
                if first_seen:
                    pipe.set(first_seen, "1", nx=True, ex=REPLAY_WINDOW)
                await self.deliveries.move(alert_id, version, ledger, [(recipient, code)], client=pipe)
                if resident:
                    await self.reach.record(alert_id, ledger, code, [recipient[2:]], client=pipe)
                await pipe.execute()
            return True
        if first_seen and not await self.redis.set(first_seen, "1", nx=True, ex=REPLAY_WINDOW):
            return True  # a replay of a receipt already applied
        moved = await self.deliveries.move(alert_id, version, ledger, [(recipient, code)])
        if code == "S" and moved != "1":
            return True  # the worker recorded "sent" already (and told the reach ledger)
        if resident:
            await self.reach.record(alert_id, ledger, code, [recipient[2:]])
        return True

    async def wechat_result(self, msgid: str, success: bool) -> bool:
        """A TEMPLATESENDJOBFINISH event: the push reached the phone (or the user blocked it).

        The event may overtake the worker recording the msgid: then it waits, keyed by msgid, for
        `on_sent` to apply it. Returns whether it was applied now."""
        code = "D" if success else "F"
        key = await self.redis.get(self._key("wechat", msgid))
        if key is None:
            await self.redis.set(self._key("wechat-early", msgid), code, ex=_REMEMBER)
            return False
        return await self.delivery(str(key), code)

    async def sms_reply(self, phone: str, body: str, sid: str) -> str | None:
        """An SMS from a resident we messaged: any reply shows they got it (acknowledged). Returns the
        resident id, or None when the number is not one we sent an SMS to."""
        key = await self.redis.hget(self._key("phones"), phone)
        parts = split_key(str(key)) if key else None
        if parts is None or not parts[3].startswith("r:"):
            log.info("sms reply from an unknown number ignored", extra={"from": mask(phone)})
            return None
        alert_id, resident = parts[0], parts[3][2:]
        await self.reach.record(alert_id, "reply", "K", [resident])
        await self.service.alerts.audit(
            actor=f"resident:{resident}",
            role="resident",
            action="sms_reply",
            obj=alert_id,
            result="ok",
            detail=f"{sid} {body[:140]}",
        )
        return resident

    # -- loudspeakers -------------------------------------------------------------------------------

    async def speaker_ack(self, device: str, ack: Mapping[str, object], delivery_key: str | None) -> None:
        """`played` → delivered and its village heard it; `failed` → failed and its cadre goes door to door."""
        code = {"played": "D", "failed": "F"}.get(str(ack.get("status")))
        parts = split_key(delivery_key) if delivery_key else None
        if code is None or parts is None:
            return
        alert_id, version, ledger, recipient = parts
        if recipient != f"s:{device}":
            log.warning("ack from a device for another device's command ignored", extra={"device": device})
            return
        moved = await self.deliveries.move(alert_id, version, ledger, [(recipient, code)])
        if ledger != "speaker":
            return  # a stop command
        speaker = await self.service.directory.speaker(device)
        if speaker is None:
            return
        if code == "F":
            await self.service.escalation.watch_speaker(
                alert_id, str(delivery_key), speaker.village, now=True
            )
        elif moved == "1" and await self.reach.village_heard(alert_id, speaker.village):
            async for residents in self.service.directory.stream_residents([speaker.village]):
                await self.reach.record(alert_id, "speaker", "H", [r.id for r in residents])

    # -- voice --------------------------------------------------------------------------------------

    async def voice_digits(self, key: str, digits: str) -> None:
        """A keypress on a call: 1 from a resident acknowledges; 1 from a contact called by an escalation
        confirms the residents read out to them (when `escalation.voice_confirm`)."""
        parts = split_key(key)
        if parts is None or digits.strip() != "1":
            return
        alert_id, _version, ledger, recipient = parts
        if recipient.startswith("r:") and ledger == "voice":
            await self.reach.record(alert_id, "voice", "K", [recipient[2:]])
            return
        if not recipient.startswith("c:"):
            return
        contact = recipient[2:]
        await self.service.alerts.audit(
            actor=f"contact:{contact}",
            role="contact",
            action="voice_ack",
            obj=alert_id,
            result="ok",
            detail=ledger,
        )
        if ledger.startswith("voice.esc") and self.service.settings.escalation.voice_confirm:
            alert = await self.service.alerts.find(alert_id)
            if alert is None:
                return
            for resident in await self.service.escalation.listed(alert_id, contact):
                await self.confirm(alert, f"voice:{contact}", contact, resident, "reached", "电话按键确认")

    async def voice_status(self, key: str, status: str, attempt: int) -> None:
        """A call's final status: answered → delivered; busy/no-answer/failed → called again after
        `voice.retry_after`, up to `voice.max_attempts` calls, then failed."""
        parts = split_key(key)
        if parts is None:
            return
        if status == "completed":
            await self.delivery(key, "D")
            return
        if status not in _CALL_UNANSWERED:
            return
        alert_id, version, ledger, recipient = parts
        raw = await self.redis.get(self._key("redial", key))
        if attempt >= self.voice_attempts or raw is None or ledger != "voice":
            await self.delivery(key, "F")
            return
        if await self.deliveries.move(alert_id, version, ledger, [(recipient, "r")]) != "1":
            return  # already redialled for this attempt (a replayed callback)
        audience, village, language, address = json.loads(raw)
        again = Batch(
            alert_id,
            version,
            "voice",
            audience,
            village,
            (Recipient(recipient, address, language),),
            attempt + 1,
        )
        alert = await self.service.alerts.find(alert_id)
        urgent = "h" if alert is not None and alert.level.urgent else "l"
        await self.redis.zadd(
            self.deliveries.retry_key("voice"),
            {f"{urgent}:{again.to_json()}": time.time() + self.voice_retry_after},
        )
        log.info("call not answered; calling again later", extra={"delivery": key, "status": status})

    # -- people -------------------------------------------------------------------------------------

    async def confirm(
        self, alert: Alert, by: str, contact_id: str, resident: str, outcome: str, note: str = ""
    ) -> str:
        """A cadre's confirmation of one resident on their list: "2" first, "1" a later one.

        Raises:
            ForbiddenTask: the resident is not on `contact_id`'s list for this alert (audited).
            ClosedTask: the alert is cancelled or expired.
            ValueError: an unknown outcome.
        """
        if outcome not in OUTCOMES:
            raise ValueError(outcome)
        if alert.state is not AlertState.ISSUED or alert.expired_at(datetime.now(UTC)):
            raise ClosedTask(alert.state.value)
        if not await self.allowed(alert.id, contact_id, resident):
            await self.service.alerts.audit(
                actor=by, role="cadre", action="confirm", obj=alert.id, result="forbidden", detail=resident
            )
            raise ForbiddenTask(resident)
        now = self.reach.clock()  # one clock for deadlines and confirmations (tests inject it)
        late = now > await self.service.tasks.deadline(alert)
        result = await self.reach.confirm(
            alert.id, resident, Confirmation(outcome, by, now, note[:500], late)
        )
        await self.service.alerts.audit(
            actor=by,
            role="cadre",
            action="confirm",
            obj=alert.id,
            result="ok",
            detail=f"{resident} {outcome}{' late' if late else ''} {note[:200]}".strip(),
        )
        if result == "2" and await self.reach.open_count(alert.id) == 0:
            await self.service.escalation.stop(alert.id)
        return result

    async def allowed(self, alert_id: str, contact_id: str, resident: str) -> bool:
        """Whether the resident is on the contact's list: their own task, or escalated to them."""
        if await self.reach.on_task(alert_id, contact_id, resident):
            return True
        return resident in await self.service.escalation.listed(alert_id, contact_id)

    async def residents_of(self, alert_id: str, contact_id: str) -> list[str]:
        """The residents a contact answers for on this alert (own tasks first, then escalated to them)."""
        own = await self.reach.task_residents(alert_id, contact_id)
        mine = set(own)
        return own + [r for r in await self.service.escalation.listed(alert_id, contact_id) if r not in mine]

    async def resident_ack(self, alert: Alert, resident: str) -> bool:
        """A resident pressed "I got it" on their confirm page; True if it was new."""
        if alert.state is not AlertState.ISSUED:
            raise ClosedTask(alert.state.value)
        result = await self.reach.record(alert.id, "link", "K", [resident])
        if result != "0":
            await self.service.alerts.audit(
                actor=f"resident:{resident}", role="resident", action="acknowledge", obj=alert.id, result="ok"
            )
            if await self.reach.open_count(alert.id) == 0:
                await self.service.escalation.stop(alert.id)
        return result != "0"
