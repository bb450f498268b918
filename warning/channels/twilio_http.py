"""Twilio's REST API for our channels: the twilio library's async client on our own HTTP session.

`TwilioChannel` is the base of the SMS and voice channels: it owns their `start`, `aclose` and `check`;
each adds only its `deliver`, made through `TwilioApi.request`.

Wiring (all opened in `TwilioApi.start`, nothing in `__init__`):

- The twilio `Client` gets `_HttpClient`, a subclass of twilio's `AsyncTwilioHttpClient` that runs on
  an aiohttp session we own: `TCPConnector(limit=connector_limit)` and `ClientTimeout(total=timeout)`.
  (The stock client builds a bare `ClientSession()` in its constructor and passes the library's
  `timeout=None` straight to aiohttp, which means *no* timeout.)
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
    failure after it was written  AmbiguousDeliveryError: Twilio may have acted on it; never resend blindly
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from warning.channels.base import BaseChannel, Message
from warning.config import TwilioSettings
from warning.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from warning.phone import mask

TWILIO_API_ORIGIN = "https://api.twilio.com"
CONFIG_RETRY_AFTER = 60.0  # seconds to wait when Twilio rejects our credentials or account

_CONFIG_STATUSES = (401, 403, 404)
_NO_LOOKUP_STATUSES = (404, 405, 501)  # a Twilio-compatible endpoint without the list resource
_AUTH_CODE, _RATE_CODE = 20003, 20429
# twilio's Client falls back to os.environ for every credential, edge and region it is not given, and
# to os.environ again when this mapping is empty; config.py is our only reader of the environment.
_NO_ENVIRONMENT = {"WARNING_TWILIO": "configured by warning.config"}

T = TypeVar("T")


@dataclass(slots=True)
class _Exchange:
    """What happened on the wire during one API call."""

    written: bool = False  # the request headers went out: the provider may act on it
    headers: Mapping[str, str] | None = None  # the response's headers, once one arrived


_EXCHANGE: ContextVar[_Exchange | None] = ContextVar("warning_twilio_exchange", default=None)


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


def _status_of(exc: TwilioException) -> int:
    """The HTTP status of a twilio error: its `status`, or that of the response it carries (0: none)."""
    status = getattr(exc, "status", None)
    if status is None and len(exc.args) > 1:
        status = getattr(exc.args[1], "status_code", None)
    try:
        return int(status or 0)
    except (TypeError, ValueError):
        return 0


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


class TwilioApi:
    """One channel's client of a Twilio account: `start` opens it, `request` makes one translated call.

    `channel` names the channel in logs ("sms", "voice"); `log` is the channel's logger, so operators
    see a refusal under the channel that met it; `not_configured(keys)` is the channel's own
    (translated) message for missing settings.
    """

    def __init__(
        self,
        twilio: TwilioSettings,
        *,
        channel: str,
        log: logging.Logger,
        not_configured: Callable[[str], str],
        connector_limit: int,
        timeout: float,
    ) -> None:
        self._twilio = twilio
        self._channel = channel
        self._log = log
        self._not_configured = not_configured
        self._connector_limit = connector_limit
        self._timeout = timeout
        self._http: _HttpClient | None = None
        self._client: Client | None = None
        self._no_lookup_logged = False

    async def start(self) -> None:
        """Create the twilio client and its HTTP session (inside the running loop); idempotent.

        Raises:
            ConfigError: the account sid, auth token or From number is missing.
        """
        required = (
            ("twilio.account_sid", self._twilio.account_sid),
            ("twilio.auth_token", self._twilio.auth_token),
            ("twilio.from", self._twilio.from_number),
        )
        missing = [key for key, value in required if not value]
        if missing:
            raise ConfigError(self._not_configured(", ".join(missing)))
        if self._client is not None:
            return
        self._http = _HttpClient(
            api_origin=self._twilio.base_url,
            connector_limit=self._connector_limit,
            timeout=self._timeout,
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

    def _require_client(self) -> Client:
        if self._client is None:
            raise RuntimeError(f"the {self._channel} channel was not started")
        return self._client

    async def request(self, message: Message, call: Callable[[Client], Awaitable[T]]) -> T:
        """Make one API request for `message` (`call` gets the twilio client) and return its result.

        Raises:
            TransientDeliveryError: 429, 5xx, rejected credentials, or the request never left.
            PermanentDeliveryError: Twilio refused this request (invalid number, unsubscribed, …).
            AmbiguousDeliveryError: the request was written but no answer came back.
        """
        client = self._require_client()
        exchange = _Exchange()
        token = _EXCHANGE.set(exchange)
        try:
            return await call(client)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._translate(exc, exchange, message) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            if exchange.written:
                self._log.warning(
                    "%s to %s: no answer from Twilio after the request was sent (%s)",
                    self._channel,
                    mask(message.address),
                    type(exc).__name__,
                    extra={"delivery": message.key},
                )
                raise AmbiguousDeliveryError(f"Twilio did not answer ({type(exc).__name__})") from exc
            raise TransientDeliveryError(f"Twilio unreachable ({type(exc).__name__})") from exc
        finally:
            _EXCHANGE.reset(token)

    async def lookup(self, message: Message, call: Callable[[Client], Awaitable[T]]) -> T | None:
        """Make one read-only request to reconcile `message`; None when the endpoint does not serve that
        resource (404/405/501: a Twilio-compatible gateway without the list API), so the caller falls back.

        Raises:
            TransientDeliveryError: the provider cannot be asked now (unreachable, no answer, 429, 5xx).
        """
        client = self._require_client()
        exchange = _Exchange()
        token = _EXCHANGE.set(exchange)
        try:
            return await call(client)
        except TwilioException as exc:
            # A list page that fails is a bare TwilioException("Unable to fetch page", response).
            status = _status_of(exc)
            if status in _NO_LOOKUP_STATUSES:
                if not self._no_lookup_logged:
                    self._no_lookup_logged = True
                    self._log.warning(
                        "%s: the provider does not serve the lookup (HTTP %s): ambiguous sends are resent once",
                        self._channel,
                        status,
                    )
                return None
            raise TransientDeliveryError(
                f"Twilio lookup: HTTP {status}",
                retry_after=_retry_after(exchange.headers),
                unhealthy=status >= 500 or status == 0,
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientDeliveryError(f"Twilio lookup failed ({type(exc).__name__})") from exc
        finally:
            _EXCHANGE.reset(token)

    def _translate(
        self, exc: TwilioRestException | TwilioServiceException, exchange: _Exchange, message: Message
    ) -> TransientDeliveryError | PermanentDeliveryError:
        status, code = int(exc.status), exc.code
        detail = f"Twilio HTTP {status} code {code}"
        where = {"delivery": message.key, "twilio_code": code, "http_status": status}
        if status == 429 or code == _RATE_CODE:
            return TransientDeliveryError(detail, retry_after=_retry_after(exchange.headers), unhealthy=False)
        if status in _CONFIG_STATUSES or code == _AUTH_CODE:
            self._log.error(
                "Twilio refused the account (HTTP %s, code %s): check twilio.account_sid, "
                "WARNING_TWILIO_AUTH_TOKEN and twilio.base_url; %s sending is paused and retried",
                status,
                code,
                self._channel,
                extra=where,
            )
            return TransientDeliveryError(detail, retry_after=CONFIG_RETRY_AFTER)
        if status >= 500:
            return TransientDeliveryError(detail, retry_after=_retry_after(exchange.headers))
        self._log.info(
            "%s to %s refused by Twilio (code %s)", self._channel, mask(message.address), code, extra=where
        )
        return PermanentDeliveryError(detail)

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


class TwilioChannel(BaseChannel):
    """A channel over Twilio's REST API; subclasses set `_api` in `__init__` and implement `deliver`."""

    _api: TwilioApi

    async def start(self) -> None:
        """Create the twilio client and its HTTP session.

        Raises:
            ConfigError: the account sid, auth token or From number is missing.
        """
        await self._api.start()

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._api.aclose()

    async def check(self) -> None:
        """Fetch our Twilio account resource.

        Raises:
            TransientDeliveryError: Twilio is unreachable, answers an error, or rejects the credentials.
        """
        await self._api.check()
