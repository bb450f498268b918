"""WeChat push: Official Account template messages to residents, WeCom app messages to cadres and officials.

`WechatChannel` ("wechat") sends an OA template message to a resident's openid. The bureau creates a
template in the OA backend with these keys (WeChat's 2023 field rules; `first`/`remark` are gone):

    thing1   标题      first line or sentence of the text, ≤ 20 characters, "…" when cut
    phrase2  预警级别  红色 / 橙色 / 黄色 / 蓝色 (a phrase is ≤ 5 characters)
    time3    发布时间  when it was sent, China time, "2024-07-01 08:30"
    thing4   内容      the rest of the text, ≤ 20 characters, "…" when cut

and sets `wechat.template_id` to it. The full text is behind `url` (the resident's link), when there is
one. Each message carries `client_msg_id` derived from its delivery key, so the platform sends a
repeat of the same delivery within ten minutes only once. Results arrive later as TEMPLATESENDJOBFINISH
events at /hooks/wechat, keyed by the msgid `deliver` returns.

`WecomChannel` ("wecom") sends a WeCom (企业微信) app message to a cadre's userid: a `textcard` (title
≤ 128 bytes, description ≤ 512 bytes, button 详情) when the cadre has a link, else `text` (≤ 2048
bytes). WeCom counts UTF-8 bytes; texts are cut on a character boundary.

Both fetch their access token through `TokenCache` (one token per app, shared by every process) and
translate the platform's answers here, by errcode, never by errmsg:

    40001 / 42001 / 40014          refresh the shared token and retry once; then TransientDeliveryError
    45009 / 45011 / 45033 / 45047  TransientDeliveryError(retry_after=60): frequency and per-member limits
    -1, HTTP 5xx                   TransientDeliveryError (system busy)
    40037                          PermanentDeliveryError + error log naming wechat.template_id
    43004, 40003, 81013, others    PermanentDeliveryError (not subscribed, bad openid, bad userid, …)
    invaliduser names our user     PermanentDeliveryError (WeCom answers errcode 0 for partial failures)
    failure before the request     TransientDeliveryError (refused, DNS, connect timeout)
    was written
    failure after it was written   AmbiguousDeliveryError: the platform may have sent it
    token endpoint refuses         TransientDeliveryError(retry_after=60) + error log naming the keys:
                                   a config problem; dead-lettering every warning would be worse

The limit codes get 60 s because the platforms' shortest documented windows are per minute (WeCom:
calls per minute per API and 30 messages per minute per member); when the daily quota is what ran
out, the retries fail again and the worker's backoff and attempt limit take over.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import re
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import aiohttp

from warning.channels.base import BaseChannel, Capability, ChannelLimits, Message
from warning.channels.wechat_token import TokenCache
from warning.config import WechatSettings, WecomSettings
from warning.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from warning.i18n import t
from warning.model import Level
from warning.render.words import CHINA_TIME, level_name
from warning.store import Store

log = logging.getLogger(__name__)

THING_MAX, PHRASE_MAX = 20, 5  # characters, WeChat's 2023 template field rules
TITLE_BYTES, DESCRIPTION_BYTES, CONTENT_BYTES = 128, 512, 2048  # WeCom textcard / text limits
ELLIPSIS = "…"
TIME_FORMAT = "%Y-%m-%d %H:%M"

TOKEN_CODES = frozenset({40001, 40014, 42001})  # invalid, malformed or expired access token
LIMIT_CODES = frozenset({45009, 45011, 45033, 45047})
SYSTEM_BUSY = -1
INVALID_TEMPLATE = 40037
LIMIT_RETRY_AFTER = 60.0
CONFIG_RETRY_AFTER = 60.0

Link = Callable[[Message], str]

_SENTENCE_END = re.compile(r"[\n。！？!?]")


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending in "…" when it had to be cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def cut_bytes(text: str, limit: int) -> str:
    """`text` in at most `limit` bytes of UTF-8, ending in "…" when cut, never splitting a character."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    # A cut through a multi-byte character leaves an incomplete tail, which "ignore" drops.
    return encoded[: limit - len(ELLIPSIS.encode())].decode(errors="ignore") + ELLIPSIS


def _one_line(text: str) -> str:
    return " ".join(text.split())


def headline(text: str) -> tuple[str, str]:
    """The first line or sentence of `text` (without a closing "。") and the rest, each on one line."""
    text = text.strip()
    end = _SENTENCE_END.search(text)
    if end is None:
        return _one_line(text), ""
    title = _one_line(text[: end.end()]).rstrip("。")
    rest = _one_line(text[end.end() :])
    return (title, rest) if title else (_one_line(text), "")


def template_data(text: str, level: Level, now: datetime) -> dict[str, dict[str, str]]:
    """The OA template fields (keys in the module docstring) for a message, within WeChat's limits."""
    title, rest = headline(text)
    return {  # a thing may not be empty: "无" (none) stands in
        "thing1": {"value": cut(title, THING_MAX) or "无"},
        "phrase2": {"value": cut(level_name(level, "zh-CN"), PHRASE_MAX)},
        "time3": {"value": now.astimezone(CHINA_TIME).strftime(TIME_FORMAT)},
        "thing4": {"value": cut(rest, THING_MAX) or "无"},
    }


def wecom_body(text: str, url: str) -> dict[str, Any]:
    """The WeCom message fields for `text`: a textcard linking to `url`, or plain text without one."""
    if not url:
        return {"msgtype": "text", "text": {"content": cut_bytes(text.strip(), CONTENT_BYTES)}}
    title, rest = headline(text)
    return {
        "msgtype": "textcard",
        "textcard": {
            "title": cut_bytes(title, TITLE_BYTES),
            "description": cut_bytes(rest or title, DESCRIPTION_BYTES),
            "url": url,
            "btntxt": "详情",
        },
    }


def client_msg_id(key: str) -> str:
    """The OA's de-duplication id for a delivery: the same key always gives the same id."""
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


class _Written:
    """Set once aiohttp has written the request headers: from then on the platform may act on it."""

    def __init__(self) -> None:
        self.yes = False


async def _on_headers_sent(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    if isinstance(ctx.trace_request_ctx, _Written):
        ctx.trace_request_ctx.yes = True


class _WeixinChannel(BaseChannel):
    """What both platforms share: one HTTP session, the shared token, one call with errcode translation."""

    _platform: str  # for logs and details: "WeChat" or "WeCom"
    _grant_path: str

    def __init__(self, *, base_url: str, timeout: float, store: Store, token_name: str) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._tokens = TokenCache(store.redis, store.keys, name=token_name, fetch=self._fetch_token)

    @abc.abstractmethod
    def _credentials(self) -> dict[str, str]:
        """Config key → value of every setting the channel cannot work without."""

    @abc.abstractmethod
    def _token_query(self) -> dict[str, str]:
        """The query of the token request."""

    async def start(self) -> None:
        """Open the HTTP session.

        Raises:
            ConfigError: a credential is not configured.
        """
        missing = [key for key, value in self._credentials().items() if not value]
        if missing:
            raise ConfigError(
                t(
                    "{platform} 通道缺少配置：{keys}",
                    "{platform} channel: {keys} not configured",
                    platform=self._platform,
                    keys=", ".join(missing),
                )
            )
        if self._session is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_on_headers_sent)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout), trace_configs=[trace]
            )

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self) -> None:
        """Get an access token (cached or fetched).

        Raises:
            TransientDeliveryError: the platform is unreachable or refuses the credentials.
        """
        await self._tokens.get()

    async def _fetch_token(self) -> tuple[str, int]:
        answer = await self._exchange("GET", self._grant_path, query=self._token_query(), acts=False)
        code = _errcode(answer)
        if code == 0 and answer.get("access_token"):
            return str(answer["access_token"]), int(answer.get("expires_in", 7200))
        detail = t(
            "{platform} 拒绝获取 access_token（errcode {code}）",
            "{platform} refused an access token (errcode {code})",
            platform=self._platform,
            code=code,
        )
        if code == SYSTEM_BUSY:
            raise TransientDeliveryError(detail)
        log.error(
            "%s refused an access token (errcode %s): check %s and base_url; sending is paused and retried",
            self._platform,
            code,
            ", ".join(self._credentials()),
        )
        raise TransientDeliveryError(detail, retry_after=CONFIG_RETRY_AFTER)

    async def _call(self, path: str, payload: dict[str, Any], message: Message) -> dict[str, Any]:
        """POST `payload` with the shared token; the platform's answer when it accepted the message.

        Raises:
            TransientDeliveryError, PermanentDeliveryError, AmbiguousDeliveryError: see the module docstring.
        """
        token = await self._tokens.get()
        answer = await self._exchange("POST", path, query={"access_token": token}, payload=payload)
        if _errcode(answer) in TOKEN_CODES:
            token = await self._tokens.refresh(token)
            answer = await self._exchange("POST", path, query={"access_token": token}, payload=payload)
        code = _errcode(answer)
        if code != 0:
            raise self._refusal(code, message)
        return answer

    def _refusal(self, code: int, message: Message) -> DeliveryError:
        detail = t(
            "{platform} 拒绝（errcode {code}）",
            "{platform} refused (errcode {code})",
            platform=self._platform,
            code=code,
        )
        where = {"delivery": message.key, "errcode": code}
        if code in LIMIT_CODES:  # a frequency limit: the platform is healthy, we slow down
            return TransientDeliveryError(detail, retry_after=LIMIT_RETRY_AFTER, unhealthy=False)
        if code in TOKEN_CODES or code == SYSTEM_BUSY:
            return TransientDeliveryError(detail)
        if code == INVALID_TEMPLATE:
            log.error(
                "WeChat does not know the template (errcode 40037): check wechat.template_id "
                "(WARNING_WECHAT_TEMPLATE_ID) against the Official Account backend",
                extra=where,
            )
        else:
            log.info("%s to %s refused (errcode %s)", self._platform, message.address, code, extra=where)
        return PermanentDeliveryError(detail)

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str],
        payload: dict[str, Any] | None = None,
        acts: bool = True,
    ) -> dict[str, Any]:
        """One request; the JSON answer. `acts`: the request may make the platform do something.

        Raises:
            TransientDeliveryError: HTTP error status, or the request failed before it was written
                (or at any point when it does not act).
            AmbiguousDeliveryError: an acting request was written and then failed or was answered unreadably.
        """
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        written = _Written()
        try:
            async with self._session.request(
                method, self._base_url + path, params=query, json=payload, trace_request_ctx=written
            ) as response:
                if response.status >= 300:
                    raise self._http_status(response.status)
                answer = await response.json(content_type=None)
                if not isinstance(answer, dict):
                    raise ValueError("the answer is not a JSON object")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # json errors are ValueErrors
            if acts and written.yes:
                log.warning(
                    "%s gave no readable answer after the request was sent (%s)",
                    self._platform,
                    type(exc).__name__,
                )
                raise AmbiguousDeliveryError(
                    t(
                        "{platform} 未给出可读的应答（{e}），消息可能已发出",
                        "{platform} gave no readable answer ({e}); the message may have been sent",
                        platform=self._platform,
                        e=type(exc).__name__,
                    )
                ) from exc
            raise TransientDeliveryError(
                t(
                    "无法连接 {platform}（{e}）",
                    "{platform} unreachable ({e})",
                    platform=self._platform,
                    e=type(exc).__name__,
                )
            ) from exc
        return answer

    def _http_status(self, status: int) -> TransientDeliveryError:
        detail = t(
            "{platform} HTTP {status}", "{platform} HTTP {status}", platform=self._platform, status=status
        )
        if status >= 500:
            return TransientDeliveryError(detail)
        # The platforms answer HTTP 200 with an errcode; anything else is the wrong base_url or a proxy.
        log.error(
            "%s answered HTTP %s: check its base_url; sending is paused and retried", self._platform, status
        )
        return TransientDeliveryError(detail, retry_after=CONFIG_RETRY_AFTER)


def _errcode(answer: dict[str, Any]) -> int:
    try:
        return int(answer.get("errcode", 0))
    except (TypeError, ValueError):
        return SYSTEM_BUSY  # an answer we cannot read: treat as the platform's "busy", retried


class WechatChannel(_WeixinChannel):
    """WeChat Official Account template messages to residents, by openid."""

    name = "wechat"
    capabilities = Capability.TEXT | Capability.RECEIPTS  # TEMPLATESENDJOBFINISH events
    _platform = "WeChat"
    _grant_path = "/cgi-bin/token"

    def __init__(self, settings: WechatSettings, *, store: Store, link: Link | None = None) -> None:
        super().__init__(
            base_url=settings.base_url,
            timeout=settings.timeout,
            store=store,
            token_name=f"oa:{settings.appid}",
        )
        # The template carries two 20-character things; the full text is behind the link.
        self.limits = ChannelLimits(max_in_flight=settings.max_in_flight, max_text=2 * THING_MAX)
        self._settings = settings
        self._link = link

    def _credentials(self) -> dict[str, str]:
        return {
            "wechat.appid": self._settings.appid,
            "wechat.secret (WARNING_WECHAT_SECRET)": self._settings.secret,
            "wechat.template_id": self._settings.template_id,
        }

    def _token_query(self) -> dict[str, str]:
        return {
            "grant_type": "client_credential",
            "appid": self._settings.appid,
            "secret": self._settings.secret,
        }

    async def deliver(self, message: Message) -> str:
        """Send the template message; return its msgid.

        Raises:
            TransientDeliveryError, PermanentDeliveryError, AmbiguousDeliveryError: see the module docstring.
        """
        payload: dict[str, Any] = {
            "touser": message.address,
            "template_id": self._settings.template_id,
            "client_msg_id": client_msg_id(message.key),
            "data": template_data(message.text, message.level, datetime.now(CHINA_TIME)),
        }
        url = self._link(message) if self._link else ""
        if url:
            payload["url"] = url
        answer = await self._call("/cgi-bin/message/template/send", payload, message)
        return str(answer.get("msgid", ""))


class WecomChannel(_WeixinChannel):
    """WeCom (企业微信) app messages to cadres and officials, by userid."""

    name = "wecom"
    capabilities = Capability.TEXT
    _platform = "WeCom"
    _grant_path = "/cgi-bin/gettoken"

    def __init__(self, settings: WecomSettings, *, store: Store, link: Link | None = None) -> None:
        super().__init__(
            base_url=settings.base_url,
            timeout=settings.timeout,
            store=store,
            token_name=f"wecom:{settings.corpid}:{settings.agentid}",  # each app has its own secret
        )
        # Chinese characters take 3 bytes of UTF-8: this many always fit a text message.
        self.limits = ChannelLimits(max_in_flight=settings.max_in_flight, max_text=CONTENT_BYTES // 3)
        self._settings = settings
        self._link = link

    def _credentials(self) -> dict[str, str]:
        return {
            "wecom.corpid": self._settings.corpid,
            "wecom.secret (WARNING_WECOM_SECRET)": self._settings.secret,
        }

    def _token_query(self) -> dict[str, str]:
        return {"corpid": self._settings.corpid, "corpsecret": self._settings.secret}

    async def deliver(self, message: Message) -> str:
        """Send the app message; return its msgid.

        Raises:
            TransientDeliveryError, PermanentDeliveryError, AmbiguousDeliveryError: see the module docstring.
        """
        url = self._link(message) if self._link else ""
        payload: dict[str, Any] = {
            "touser": message.address,
            "agentid": self._settings.agentid,
            **wecom_body(message.text, url),
        }
        answer = await self._call("/cgi-bin/message/send", payload, message)
        # userids are case-insensitive; unlicenseduser: accounts without the messaging licence get nothing.
        refused = "|".join((str(answer.get("invaliduser", "")), str(answer.get("unlicenseduser", ""))))
        if message.address.casefold() in {user.casefold() for user in refused.split("|")}:
            log.info("WeCom does not know user %s", message.address, extra={"delivery": message.key})
            raise PermanentDeliveryError(
                t("企业微信用户无效：{user}", "WeCom user not valid: {user}", user=message.address)
            )
        return str(answer.get("msgid", ""))
