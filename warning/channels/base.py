"""The channel contract: one small protocol, message and result types, and the bookkeeping wrapper.

Every adapter subclasses `BaseChannel` and implements only `deliver(message) -> provider_id`, raising
`TransientDeliveryError` (with `retry_after`), `PermanentDeliveryError` or `AmbiguousDeliveryError`
at its edge; an adapter whose provider can list what it accepted also implements `lookup`, which the
worker uses to reconcile ambiguous sends. The `@final` `send` owns what no adapter may skip: the expiry check right before the
provider call, bounded concurrency, and turning every outcome — including bugs — into data.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, final

from warning.errors import AmbiguousDeliveryError, PermanentDeliveryError, TransientDeliveryError
from warning.model import Level

log = logging.getLogger(__name__)

# A message is not handed to the provider this close to its alert's `expires`: it would arrive after it.
EXPIRY_MARGIN = timedelta(seconds=2)


class Capability(enum.Flag):
    """What a channel can do beyond carrying text."""

    TEXT = enum.auto()
    VOICE = enum.auto()
    RECEIPTS = enum.auto()  # the provider reports delivery later (status callbacks)
    PLAYBACK = enum.auto()  # the device reports playback (loudspeakers)
    REPLIES = enum.auto()


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """How much a channel may take at once; the rate itself is shared across hosts (ratelimit.py)."""

    max_in_flight: int  # concurrent provider calls per worker process
    max_text: int  # characters of text the channel can carry in one message


@dataclass(frozen=True, slots=True)
class Message:
    """One message to one recipient over one channel for one alert version."""

    key: str  # idempotency key: {alert}:{version}:{channel}:{recipient}
    recipient: str  # "r:{resident}", "c:{contact}" or "s:{device}"
    address: str  # E.164 number, or the loudspeaker's device id
    text: str
    alert_id: str
    version: int
    level: Level
    exercise: bool
    expires: datetime | None
    action: str = "play"  # loudspeakers: play | stop
    repeat: int = 1  # loudspeakers: how many times to play
    attempt: int = 1  # which attempt this is for the recipient (voice: which call)
    audience: str = ""  # the audience the recipient was reached as
    resend: bool = False  # an ambiguous earlier send the provider had no record of, sent again


class Outcome(enum.StrEnum):
    SENT = "sent"  # the provider accepted it (SMS queued, MQTT PUBACK)
    TRANSIENT = "transient"  # failed; worth retrying
    PERMANENT = "permanent"  # failed; never retry
    AMBIGUOUS = "ambiguous"  # may have been sent; never resent blindly
    EXPIRED = "expired"  # not sent: the alert expired before the call
    WITHHELD = "withheld"  # not sent: the worker may no longer send this batch (another one took it over)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    key: str
    outcome: Outcome
    provider_id: str = ""
    detail: str = ""
    retry_after: float | None = None
    unexpected: bool = False  # an adapter bug, not a provider answer: retried at most once
    unhealthy: bool = False  # the provider failed us (5xx, unreachable, no answer), not just refused

    @property
    def healthy(self) -> bool | None:
        """What this result says of the provider's health, for its circuit breaker (None: nothing)."""
        if self.outcome in (Outcome.EXPIRED, Outcome.WITHHELD) or self.unexpected:
            return None
        return not self.unhealthy


# What a provider says of an ambiguous send: it has it (its id), it has not, or it cannot tell us.
NOT_FOUND: Final = ""
UNKNOWN: Final = None
Found = str | None  # a provider id, NOT_FOUND, or UNKNOWN (the provider has no lookup)


class Channel(Protocol):
    """What the workers need from a channel."""

    name: str
    capabilities: Capability
    limits: ChannelLimits

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def send(
        self, messages: Sequence[Message], *, may_send: Callable[[], bool] | None = None
    ) -> list[DeliveryResult]:
        """One result per message, in order; `may_send()` is asked right before each provider call
        (False: that message is WITHHELD)."""
        ...

    async def check(self) -> None:
        """Return if the provider is reachable now; raise a `DeliveryError` saying why not."""
        ...

    async def lookup(self, message: Message, since: datetime) -> Found:
        """Did the provider accept `message` (sent at or after `since`)? Its id, NOT_FOUND or UNKNOWN.

        Raises:
            TransientDeliveryError: the provider cannot be asked now.
        """
        ...


class BaseChannel(abc.ABC):
    """Adapters subclass this and implement `deliver`; `send` is final and does the bookkeeping."""

    name: str
    capabilities: Capability
    limits: ChannelLimits

    async def start(self) -> None:  # noqa: B027 - optional hook: most adapters open something here
        """Open clients and connections (nothing is opened in `__init__`)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Close what `start` opened."""

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Raise a `DeliveryError` if the provider cannot be reached now."""

    async def lookup(self, message: Message, since: datetime) -> Found:
        """Adapters whose provider lists what it accepted override this; by default nothing is known.

        Raises:
            TransientDeliveryError: the provider cannot be asked now.
        """
        return UNKNOWN

    @abc.abstractmethod
    async def deliver(self, message: Message) -> str:
        """Hand one message to the provider; return the provider's id for it.

        Raises:
            TransientDeliveryError: failed, worth retrying (with `retry_after` when the provider says).
            PermanentDeliveryError: failed, never retry.
            AmbiguousDeliveryError: the request may have reached the provider (e.g. timed out after sending).
        """

    @final
    async def send(
        self, messages: Sequence[Message], *, may_send: Callable[[], bool] | None = None
    ) -> list[DeliveryResult]:
        """Deliver messages concurrently (bounded by `limits.max_in_flight`); one result per message, in
        order. `may_send()`, asked right before each call (a cheap local check), may withhold the rest."""
        gate = asyncio.Semaphore(self.limits.max_in_flight)

        async def one(message: Message) -> DeliveryResult:
            async with gate:
                # Checked at the last moment, with a margin for the request's way to the provider (a busy
                # loop, a slow connection): nothing ever reaches the provider after `expires`.
                if message.expires is not None and datetime.now(UTC) >= message.expires - EXPIRY_MARGIN:
                    return DeliveryResult(message.key, Outcome.EXPIRED)
                if may_send is not None and not may_send():
                    return DeliveryResult(message.key, Outcome.WITHHELD)
                try:
                    provider_id = await self.deliver(message)
                except TransientDeliveryError as exc:
                    return DeliveryResult(
                        message.key,
                        Outcome.TRANSIENT,
                        detail=str(exc),
                        retry_after=exc.retry_after,
                        unhealthy=exc.unhealthy,
                    )
                except PermanentDeliveryError as exc:
                    return DeliveryResult(message.key, Outcome.PERMANENT, detail=str(exc))
                except AmbiguousDeliveryError as exc:
                    return DeliveryResult(message.key, Outcome.AMBIGUOUS, detail=str(exc), unhealthy=True)
                except Exception as exc:
                    log.exception(
                        "channel %s failed unexpectedly", self.name, extra={"delivery": message.key}
                    )
                    return DeliveryResult(message.key, Outcome.TRANSIENT, detail=repr(exc), unexpected=True)
                return DeliveryResult(message.key, Outcome.SENT, provider_id=provider_id)

        return list(await asyncio.gather(*(one(m) for m in messages)))
