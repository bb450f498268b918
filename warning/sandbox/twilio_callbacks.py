"""Signed status callbacks of the Twilio sandbox: form POSTs with `X-Twilio-Signature`, retried then dropped.

The signature is Twilio's: HMAC-SHA1 over the full callback URL followed by every POST parameter name
and value in sorted order, base64-encoded, keyed with the account's auth token. It is computed with
the twilio library's own `RequestValidator`, so a receiver that validates real Twilio traffic accepts
the sandbox's too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Mapping

import aiohttp
from twilio.request_validator import RequestValidator

from warning.phone import mask

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"


def sign(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """The `X-Twilio-Signature` Twilio would send with a form POST of `params` to `url`."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


class CallbackSender:
    """POSTs signed callbacks over one HTTP session; retries a few times, then drops (and logs) them."""

    def __init__(
        self, auth_token: str, *, attempts: int = 3, backoff: float = 0.2, timeout: float = 5.0
    ) -> None:
        self._auth_token = auth_token
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self.dropped = 0

    async def start(self) -> None:
        """Open the HTTP session (inside the running loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, params: Mapping[str, str]) -> tuple[int, bool]:
        """POST one callback; return how many attempts were made and whether one was accepted.

        Connection failures, 5xx and 429 are retried with growing pauses; any other answer that is not
        2xx (e.g. 403 for a signature the receiver rejects) drops the callback at once: sending the
        same bytes again cannot change the answer.
        """
        if self._session is None:
            raise RuntimeError("CallbackSender.start() was not called")
        headers = {
            SIGNATURE_HEADER: sign(url, params, self._auth_token),
            # Real Twilio sends one per webhook so receivers can drop duplicates.
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1",
        }
        reason = ""
        attempt = 0
        for attempt in range(1, self._attempts + 1):
            try:
                async with self._session.post(url, data=dict(params), headers=headers) as response:
                    await response.read()
                    if response.status < 300:
                        return attempt, True
                    reason = f"HTTP {response.status}"
                    if response.status < 500 and response.status != 429:
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * attempt)
        self.dropped += 1
        # A receiver that is down drops every callback: log the 1st, 10th, 100th… not a line per message.
        if math.log10(self.dropped).is_integer():
            log.warning(
                "sandbox status callback dropped after %s: %s %s for %s (%d dropped so far)",
                reason,
                params.get("MessageSid", ""),
                params.get("MessageStatus", ""),
                mask(params.get("To", "")),
                self.dropped,
            )
        return attempt, False
