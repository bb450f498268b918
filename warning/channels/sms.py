"""The SMS channel: Twilio's Messages API through the twilio library's async client.

Wiring (all opened in `start`, nothing in `__init__`):

- The twilio `Client` gets `_HttpClient`, a subclass of twilio's `AsyncTwilioHttpClient` that runs on
  an aiohttp session we own: `TCPConnector(limit=sms.connector_limit)` and
  `ClientTimeout(total=sms.timeout)`. (The stock client builds a bare `ClientSession()` in its
  constructor and passes the library's `timeout=None` straight to aiohttp, which means *no* timeout.)
- `twilio.base_url` is honoured the way Twilio's support recommends for mock servers (twilio-python
  issue #521): the custom HTTP client sends requests for `https://api.twilio.com` to the configured
  origin instead.
- twilio's `TwilioRestException` keeps status and code but drops the response headers, so the HTTP
  client records each exchange (was the request written? which headers came back?) in a per-task
  context variable; that is where `Retry-After` and "sent or not" come from.

Error translation at this edge (by status and Twilio code, never by message text):

    429 / 20429                   TransientDeliveryError(retry_after=Retry-After)
    401 / 20003, 403, 404         TransientDeliveryError(retry_after=60) + error log: a config problem,
                                  and dead-lettering every warning would be worse than waiting
    5xx                           TransientDeliveryError
    other 4xx (21211, 21610, …)   PermanentDeliveryError: the same request gets the same answer
    failure before the request    TransientDeliveryError (refused, DNS, connect timeout)
    was written
    failure after it was written  AmbiguousDeliveryError: Twilio may have queued it; never resend blindly
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from warning.channels.base import BaseChannel, Capability, ChannelLimits, Message
from warning.config import SmsSettings, TwilioSettings
from warning.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from warning.i18n import t
from warning.phone import mask

log = logging.getLogger(__name__)

TWILIO_API_ORIGIN = "https://api.twilio.com"
MAX_BODY = 1600  # characters Twilio accepts in one concatenated message
MIN_VALIDITY, MAX_VALIDITY = 1, 36000  # seconds Twilio accepts as ValidityPeriod
CONFIG_RETRY_AFTER = 60.0  # seconds to wait when Twilio rejects our credentials or account

_CONFIG_STATUSES = (401, 403, 404)
_AUTH_CODE, _RATE_CODE = 20003, 20429
# twilio's Client falls back to os.environ for every credential, edge and region it is not given, and
# to os.environ again when this mapping is empty; config.py is our only reader of the environment.
_NO_ENVIRONMENT = {"WARNING_TWILIO": "configured by warning.config"}


@dataclass(slots=True)
class _Exchange:
    """What happened on the wire during one API call."""

    written: bool = False  # the request headers went out: the provider may act on it
    headers: Mapping[str, str] | None = None  # the response's headers, once one arrived


_EXCHANGE: ContextVar[_Exchange | None] = ContextVar("warning_sms_exchange", default=None)


async def _on_headers_sent(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    exchange = ctx.trace_request_ctx
    if isinstance(exchange, _Exchange):
        exchange.written = True


class _HttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio ships no type information
    """twilio's async HTTP client on our own session (connector limit, timeout), recording each exchange."""

    def __init__(self, *, api_origin: str, connector_limit: int, timeout: float) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_on_headers_sent)
        self._api_origin = api_origin.rstrip("/")
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connector_limit),
            timeout=aiohttp.ClientTimeout(total=timeout),
            trace_configs=[trace],
        )

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (twilio's AsyncHttpClient signature)
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request; the signature and result are those of twilio's `AsyncHttpClient.request`.

        Raises:
            aiohttp.ClientError, TimeoutError: the exchange failed; `_EXCHANGE` says whether it was written.
        """
        if url.startswith(TWILIO_API_ORIGIN):
            url = self._api_origin + url[len(TWILIO_API_ORIGIN) :]
        exchange = _EXCHANGE.get() or _Exchange()
        body: dict[str, Any] = {"data": data}
        if headers and headers.get("Content-Type") in ("application/json", "application/scim+json"):
            body = {"json": data}
        if auth is not None:  # aiohttp 3.14 deprecates its BasicAuth helper; the header is simple
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {credentials}"}
        options: dict[str, Any] = {}
        if timeout is not None:  # the library passes None: keep the session's timeout, not "no timeout"
            options["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self.session.request(
            method.upper(),
            url,
            params=params or None,  # type: ignore[arg-type]  # twilio's values are str-able
            headers=headers,
            allow_redirects=allow_redirects,
            trace_request_ctx=exchange,
            **body,
            **options,
        ) as response:
            text = await response.text()
            exchange.headers = response.headers
            return Response(response.status, text, response.headers)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date), or None."""
    raw = (headers or {}).get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _validity_period(expires: datetime | None) -> int | None:
    """Whole seconds until `expires`, clamped to what Twilio accepts; None (omit) when it never expires."""
    if expires is None:
        return None
    remaining = math.floor((expires - datetime.now(UTC)).total_seconds())
    return min(MAX_VALIDITY, max(MIN_VALIDITY, remaining))


class SmsChannel(BaseChannel):
    """SMS through Twilio; one `deliver` is one `messages.create_async` call."""

    name = "sms"
    capabilities = Capability.TEXT | Capability.RECEIPTS

    def __init__(self, twilio: TwilioSettings, sms: SmsSettings, *, status_callback_url: str) -> None:
        self.limits = ChannelLimits(max_in_flight=sms.max_in_flight, max_text=MAX_BODY)
        self._twilio = twilio
        self._sms = sms
        self._status_callback_url = status_callback_url
        self._http: _HttpClient | None = None
        self._client: Client | None = None

    async def start(self) -> None:
        """Create the twilio client and its HTTP session.

        Raises:
            ConfigError: the account sid, auth token or From number is missing.
        """
        if self._client is not None:
            return
        missing = [
            key
            for key, value in (
                ("twilio.account_sid", self._twilio.account_sid),
                ("twilio.auth_token", self._twilio.auth_token),
                ("twilio.from", self._twilio.from_number),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                t("短信通道缺少配置：{keys}", "SMS channel: {keys} not configured", keys=", ".join(missing))
            )
        self._http = _HttpClient(
            api_origin=self._twilio.base_url,
            connector_limit=self._sms.connector_limit,
            timeout=self._sms.timeout,
        )
        self._client = Client(
            self._twilio.account_sid,
            self._twilio.auth_token,
            http_client=self._http,
            environment=_NO_ENVIRONMENT,
        )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    def _status_callback(self, key: str) -> str:
        joiner = "&" if "?" in self._status_callback_url else "?"
        return f"{self._status_callback_url}{joiner}d={quote(key, safe='')}"

    async def deliver(self, message: Message) -> str:
        """Create the message at Twilio; return its sid (SM…).

        Raises:
            TransientDeliveryError: 429, 5xx, rejected credentials, or the request never left.
            PermanentDeliveryError: Twilio refused this message (invalid number, unsubscribed, …).
            AmbiguousDeliveryError: the request was written but no answer came back.
        """
        client = self._require_client()
        exchange = _Exchange()
        token = _EXCHANGE.set(exchange)
        fields: dict[str, Any] = {
            "to": message.address,
            "from_": self._twilio.from_number,
            "body": message.text,
            "status_callback": self._status_callback(message.key),
        }
        validity = _validity_period(message.expires)
        if validity is not None:
            fields["validity_period"] = validity
        try:
            created = await client.messages.create_async(**fields)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._translate(exc, exchange, message) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            if exchange.written:
                log.warning(
                    "sms to %s: no answer from Twilio after the request was sent (%s)",
                    mask(message.address),
                    type(exc).__name__,
                    extra={"delivery": message.key},
                )
                raise AmbiguousDeliveryError(f"Twilio did not answer ({type(exc).__name__})") from exc
            raise TransientDeliveryError(f"Twilio unreachable ({type(exc).__name__})") from exc
        finally:
            _EXCHANGE.reset(token)
        return str(created.sid)

    def _translate(
        self, exc: TwilioRestException | TwilioServiceException, exchange: _Exchange, message: Message
    ) -> TransientDeliveryError | PermanentDeliveryError:
        status, code = int(exc.status), exc.code
        detail = f"Twilio HTTP {status} code {code}"
        where = {"delivery": message.key, "twilio_code": code, "http_status": status}
        if status == 429 or code == _RATE_CODE:
            return TransientDeliveryError(detail, retry_after=_retry_after(exchange.headers))
        if status in _CONFIG_STATUSES or code == _AUTH_CODE:
            log.error(
                "Twilio refused the account (HTTP %s, code %s): check twilio.account_sid, "
                "WARNING_TWILIO_AUTH_TOKEN and twilio.base_url; SMS sending is paused and retried",
                status,
                code,
                extra=where,
            )
            return TransientDeliveryError(detail, retry_after=CONFIG_RETRY_AFTER)
        if status >= 500:
            return TransientDeliveryError(detail, retry_after=_retry_after(exchange.headers))
        log.info("sms to %s refused by Twilio (code %s)", mask(message.address), code, extra=where)
        return PermanentDeliveryError(detail)

    def _require_client(self) -> Client:
        if self._client is None:
            raise RuntimeError("SmsChannel.start() was not called")
        return self._client

    async def check(self) -> None:
        """Fetch our Twilio account resource.

        Raises:
            TransientDeliveryError: Twilio is unreachable, answers an error, or rejects the credentials.
        """
        client = self._require_client()
        try:
            await client.api.v2010.accounts(self._twilio.account_sid).fetch_async()
        except (TwilioRestException, TwilioServiceException) as exc:
            raise TransientDeliveryError(
                f"Twilio account check failed: HTTP {exc.status} code {exc.code}",
                retry_after=CONFIG_RETRY_AFTER if int(exc.status) in _CONFIG_STATUSES else None,
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientDeliveryError(f"Twilio unreachable ({type(exc).__name__})") from exc
