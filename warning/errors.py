"""The exception tree of `warning`; imports nothing of ours.

    WarningError                      every error this package raises on purpose
    ├── UsageError                    the user asked for something malformed (exit code 2)
    │   ├── FieldError                a request field is missing, unknown or invalid (names the field)
    │   │   └── MissingField          a field an issued alert must have (headline, instruction) is empty
    │   ├── ConfigError               a bad config file, key or value
    │   ├── ImportFileError           a directory file that cannot be imported at all (bad header, unreadable)
    │   ├── RenderError               a message template is missing, invalid, over budget or too long for SMS
    │   └── CapError                  a CAP message is malformed, hostile or breaks a CAP 1.2 rule (names `element`, `rule`)
    ├── StoreError                    Redis is unreachable, misconfigured or refused to start
    │   └── VolatileStoreError        Redis keeps nothing on disk and `redis.allow_volatile` is off
    ├── BrokerError                   the MQTT broker is unreachable or refused to start
    ├── FetchError                    a feed or CAP document was refused or could not be fetched or read (names `url`)
    ├── DeliveryError                 a channel could not deliver (raised by channel adapters only)
    │   ├── TransientDeliveryError    worth retrying (until the alert expires), after `retry_after` seconds
    │   ├── PermanentDeliveryError    never retry (bad number, unsubscribed, …)
    │   └── AmbiguousDeliveryError    the request may have reached the provider: looked up, then resent
    └── AlertError                    an alert operation is not possible in its state
        └── AlertNotFound             no alert has this id

Decide by type, never by message text. Messages are user-facing and already translated.
"""

from __future__ import annotations


class WarningError(Exception):
    """Base of every error raised on purpose by this package."""

    exit_code = 1


class UsageError(WarningError):
    """The user asked for something malformed; the message says what to fix."""

    exit_code = 2


class FieldError(UsageError):
    """A request field is missing, unknown or invalid; `field` names it (API errors carry it)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class MissingField(FieldError):
    """A field every sent alert must carry (headline, instruction) is missing or blank; the API says
    `missing_field` and names it."""


class ConfigError(UsageError):
    """A configuration file, key or value is invalid."""


class ImportFileError(UsageError):
    """A directory file cannot be imported at all (unreadable, unknown format, bad header)."""


class RenderError(UsageError):
    """A message template cannot be rendered: missing, invalid, over its budget, or an SMS too long."""


class CapError(UsageError):
    """A CAP message is refused; `element` is where (e.g. `alert/info[1]/area[2]/polygon[1]`), `rule` which rule."""

    def __init__(self, message: str, *, element: str, rule: str) -> None:
        super().__init__(message)
        self.element = element
        self.rule = rule


class StoreError(WarningError):
    """Redis is unreachable, misconfigured, or the embedded server failed to start."""


class VolatileStoreError(StoreError):
    """Redis keeps nothing on disk and the configuration does not allow that."""

    exit_code = 2


class BrokerError(WarningError):
    """The MQTT broker is unreachable or the embedded broker failed to start."""


class FetchError(WarningError):
    """A feed or CAP document was refused (scheme, host, address, redirect, size, time) or could not be read."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class DeliveryError(WarningError):
    """A channel could not deliver a message."""


class TransientDeliveryError(DeliveryError):
    """A delivery failed in a way worth retrying."""

    def __init__(self, message: str, *, retry_after: float | None = None, unhealthy: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # False when the provider answered and only asked us to slow down (429): it counts against its
        # circuit breaker only when it is failing (5xx, unreachable, timing out).
        self.unhealthy = unhealthy


class PermanentDeliveryError(DeliveryError):
    """A delivery failed in a way that no retry can fix."""


class AmbiguousDeliveryError(DeliveryError):
    """The request may or may not have reached the provider: reconciled (looked up) before any resend."""


class AlertError(WarningError):
    """An alert operation is not possible in the alert's state."""

    exit_code = 2


class AlertNotFound(AlertError):
    """No alert has this id."""
