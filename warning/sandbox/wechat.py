"""The WeChat sandbox: the Official Account and WeCom message APIs over real HTTP, for drills, demos and tests.

One aiohttp app serves both platforms' paths with their JSON shapes and error codes:

    GET  /cgi-bin/token?grant_type=client_credential&appid=&secret=   OA token
    POST /cgi-bin/message/template/send?access_token=                  OA template message
    GET  /cgi-bin/gettoken?corpid=&corpsecret=                         WeCom token
    POST /cgi-bin/message/send?access_token=                           WeCom app message

    40013 / 40125   wrong appid / secret (OA); WeCom: 40013 wrong corpid, 40001 wrong corpsecret
    41001           no access_token
    40001 / 40014   unknown, invalidated or replaced token (OA / WeCom)
    42001           expired token
    40037           unknown template_id
    40003           malformed openid
    43004           openid in `unsubscribed`
    47003           a template field breaks WeChat's 2023 rules (thing ≤ 20, phrase ≤ 5, time a time)
    81013           WeCom: every user in `touser` is unknown (`invaliduser` lists them; a partly
                    unknown `touser` gets errcode 0 and `invaliduser`)
    45009           more than `per_minute` message requests in the last minute
    -1              system busy, for a fraction `error_rate` of message requests

As on the real OA, fetching a token replaces the previous ones, which keep working for
`replace_grace` seconds (five minutes) and then answer 40001: a deployment whose processes each fetch
their own token fails there. A repeat of an OA message with the same openid and `client_msg_id` within
ten minutes is answered with the first message's msgid and not sent again. `latency` delays every
answer *after* the request was acted on, so a client that times out has sent the message anyway.

When `event_url` is set, each accepted OA message is followed by the platform's TEMPLATESENDJOBFINISH
event, POSTed as XML to `event_url?signature=…&timestamp=…&nonce=…&openid=…`, signed with
`event_token` the way WeChat signs them; retried on connection errors and 5xx, never after a 4xx.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from warning.config import WechatSettings, WecomSettings
from warning.sandbox.serve import drain, serve
from warning.web.signatures import wechat_signature

log = logging.getLogger(__name__)

SANDBOX_APPID = "wx5a4db0c05a4db0c0"
SANDBOX_SECRET = "5a4db0c05a4db0c05a4db0c05a4db0c0"  # noqa: S105 (a published drill credential)
SANDBOX_TEMPLATE_ID = "warning-sandbox-template-typhoon-drill-0001"
SANDBOX_TOKEN = "warningsandbox"  # noqa: S105 (the drill account's event-signing token, public)
SANDBOX_ORIGINAL_ID = "gh_5a4db0c05a4d"  # the OA's own id, ToUserName of its events
SANDBOX_CORPID = "ww5a4db0c05a4db0c0"
SANDBOX_CORPSECRET = "sandbox-corpsecret-is-public-not-secret-5a4db0c0"
SANDBOX_AGENTID = 1000002

OA, WECOM = "oa", "wecom"
DEDUPLICATION_WINDOW = 600.0  # seconds the OA remembers (openid, client_msg_id)
TEXT_BYTES, TITLE_BYTES, DESCRIPTION_BYTES = 2048, 128, 512  # WeCom truncates beyond these

_OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y-%m-%d", "%H:%M")
_FIELD_KIND = re.compile(r"([a-z_]+?)\d+")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Refused(Exception):
    """An answer with a non-zero errcode (the platforms answer HTTP 200 with it)."""

    def __init__(self, errcode: int, errmsg: str, **extra: str) -> None:
        super().__init__(errmsg)
        self.errcode, self.errmsg, self.extra = errcode, errmsg, extra


@dataclass
class SentMessage:
    """A message the sandbox accepted (one per WeCom recipient)."""

    platform: str  # OA or WECOM
    touser: str
    msgid: str
    template_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    msgtype: str = ""  # WeCom: text | textcard
    textcard: dict[str, Any] = field(default_factory=dict)
    content: str = ""
    client_msg_id: str = ""
    truncated: bool = False  # WeCom cut a field over its byte limit (a channel bug)
    event_status: str = ""  # the TEMPLATESENDJOBFINISH status, once the event was accepted


@dataclass
class _Token:
    platform: str
    expires_at: float
    revoked: bool = False
    replaced_at: float | None = None


class WechatSandbox:
    """State of one emulated OA and one WeCom app: tokens, quota, messages, knobs; `app()` serves it."""

    def __init__(
        self,
        *,
        appid: str = SANDBOX_APPID,
        secret: str = SANDBOX_SECRET,
        template_ids: Iterable[str] = (SANDBOX_TEMPLATE_ID,),
        corpid: str = SANDBOX_CORPID,
        corpsecret: str = SANDBOX_CORPSECRET,
        agentid: int = SANDBOX_AGENTID,
        event_token: str = SANDBOX_TOKEN,
        event_url: str | None = None,
        token_ttl: int = 7200,
        replace_grace: float = 300.0,
        per_minute: int | None = None,
        latency: float = 0.0,
        error_rate: float = 0.0,
        unsubscribed: Iterable[str] = (),
        blocked: Iterable[str] = (),
        unknown_users: Iterable[str] = (),
        seed: int | None = None,
        retain: int = 200_000,
    ) -> None:
        self.appid, self.secret, self.template_ids = appid, secret, set(template_ids)
        self.corpid, self.corpsecret, self.agentid = corpid, corpsecret, agentid
        self.event_token, self.event_url = event_token, event_url
        self.token_ttl = token_ttl  # seconds a new token lives (expires_in)
        self.replace_grace = replace_grace  # seconds a replaced token keeps working
        self.per_minute = per_minute  # message requests per platform per minute; None: no quota
        self.latency = latency  # seconds every API answer is held back, after acting on the request
        self.error_rate = error_rate  # fraction of message requests answered -1 (system busy)
        self.unsubscribed = set(unsubscribed)  # openids that do not follow the OA: 43004
        self.blocked = set(blocked)  # openids that blocked the OA: event status "failed:user block"
        self.unknown_users = {u.casefold() for u in unknown_users}  # WeCom userids not in the corp
        self.event_attempts, self.event_backoff, self.event_timeout = 3, 0.2, 5.0
        self.sent: list[SentMessage] = []  # accepted messages, oldest first; beyond `retain` the oldest go
        self._retain = retain
        self.token_fetches = 0  # token requests received, whatever the answer
        self.events_dropped = 0
        self._rng = random.Random(seed)
        self._tokens: dict[str, _Token] = {}
        self._calls: dict[str, deque[float]] = {OA: deque(), WECOM: deque()}
        self._seen: dict[tuple[str, str], tuple[float, str]] = {}  # (openid, client_msg_id) → (when, msgid)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    # ---- knobs and inspection (in process) ----

    def invalidate_tokens(self) -> None:
        """Every token issued so far answers 40001 (OA) / 40014 (WeCom) from now on."""
        for token in self._tokens.values():
            token.revoked = True

    def expire_tokens(self) -> None:
        """Every token issued so far answers 42001 (expired) from now on."""
        now = time.monotonic()
        for token in self._tokens.values():
            token.expires_at = min(token.expires_at, now)

    def sent_to(self, touser: str) -> list[SentMessage]:
        """Accepted messages to this openid or userid, oldest first."""
        return [m for m in self.sent if m.touser == touser]

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every result event started so far was delivered or dropped."""
        await drain(self._tasks, within)

    # ---- the HTTP application ----

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this sandbox's state."""
        app = web.Application(middlewares=[self._answer], client_max_size=256 * 1024)
        app.cleanup_ctx.append(self._resources)
        app.router.add_get("/cgi-bin/token", self._oa_token)
        app.router.add_post("/cgi-bin/message/template/send", self._oa_send)
        app.router.add_get("/cgi-bin/gettoken", self._wecom_token)
        app.router.add_post("/cgi-bin/message/send", self._wecom_send)
        return app

    async def _resources(self, app: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.event_timeout))
        yield
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()
        self._session = None

    @web.middleware
    async def _answer(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Errcodes as the platforms send them (HTTP 200 + JSON), and the latency knob."""
        try:
            response = await handler(request)
        except _Refused as exc:
            rid = f"{self._rng.getrandbits(48):012x}-{self._rng.getrandbits(32):08x}"
            body = {"errcode": exc.errcode, "errmsg": f"{exc.errmsg} rid: {rid}", **exc.extra}
            response = web.json_response(body)
        if self.latency:
            await asyncio.sleep(self.latency)
        return response

    # ---- tokens ----

    def _issue(self, platform: str) -> str:
        now = time.monotonic()
        for token in self._tokens.values():
            if token.platform == platform and token.replaced_at is None:
                token.replaced_at = now
        value = self._rng.randbytes(48).hex()
        self._tokens[value] = _Token(platform, now + self.token_ttl)
        return value

    def _authorise(self, platform: str, request: web.Request) -> None:
        value = request.query.get("access_token", "")
        if not value:
            raise _Refused(41001, "access_token missing")
        token = self._tokens.get(value)
        now = time.monotonic()
        if (
            token is None
            or token.platform != platform
            or token.revoked
            or (token.replaced_at is not None and now - token.replaced_at > self.replace_grace)
        ):
            if platform == OA:
                raise _Refused(40001, "invalid credential, access_token is invalid or not latest")
            raise _Refused(40014, "invalid access_token")
        if now >= token.expires_at:
            raise _Refused(42001, "access_token expired")

    async def _oa_token(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        query = request.query
        if query.get("grant_type") != "client_credential":
            raise _Refused(40002, "invalid grant_type")
        if query.get("appid") != self.appid:
            raise _Refused(40013, "invalid appid")
        if not hmac.compare_digest(query.get("secret", ""), self.secret):
            raise _Refused(40125, "invalid appsecret")
        return web.json_response({"access_token": self._issue(OA), "expires_in": self.token_ttl})

    async def _wecom_token(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        if request.query.get("corpid") != self.corpid:
            raise _Refused(40013, "invalid corpid")
        if not hmac.compare_digest(request.query.get("corpsecret", ""), self.corpsecret):
            raise _Refused(40001, "invalid credential")
        token = self._issue(WECOM)
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl}
        )

    # ---- messages ----

    async def _message_request(self, platform: str, request: web.Request) -> dict[str, Any]:
        """The JSON body of a message request that passed the token, the quota and the busy draw."""
        self._authorise(platform, request)
        now = time.monotonic()
        calls = self._calls[platform]
        while calls and now - calls[0] >= 60.0:
            calls.popleft()
        if self.per_minute is not None and len(calls) >= self.per_minute:
            raise _Refused(45009, "api freq out of limit")
        calls.append(now)
        if self._rng.random() < self.error_rate:
            raise _Refused(-1, "system error")
        try:
            body = await request.json()
        except ValueError:
            raise _Refused(47001, "data format error") from None
        if not isinstance(body, dict):
            raise _Refused(47001, "data format error")
        return body

    async def _oa_send(self, request: web.Request) -> web.Response:
        body = await self._message_request(OA, request)
        touser = body.get("touser")
        if not isinstance(touser, str) or not _OPENID.fullmatch(touser):
            raise _Refused(40003, "invalid openid")
        template_id = body.get("template_id")
        if template_id not in self.template_ids:
            raise _Refused(40037, "invalid template_id")
        if touser in self.unsubscribed:
            raise _Refused(43004, "require subscribe")
        data = body.get("data")
        if not isinstance(data, dict):
            raise _Refused(47003, "argument invalid! data is empty")
        for key, value in data.items():
            _check_field(key, value)
        now = time.monotonic()
        while self._seen and now - next(iter(self._seen.values()))[0] >= DEDUPLICATION_WINDOW:
            del self._seen[next(iter(self._seen))]  # oldest first: dicts keep insertion order
        client_msg_id = str(body.get("client_msg_id", ""))
        if client_msg_id:
            first = self._seen.get((touser, client_msg_id))
            if first is not None:
                return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": int(first[1])})
        msgid = str(self._rng.randrange(10**18, 2**63))  # fits an int64, as the OA's do
        if client_msg_id:
            self._seen[(touser, client_msg_id)] = (now, msgid)
        message = SentMessage(
            OA, touser, msgid, template_id, data, str(body.get("url", "")), client_msg_id=client_msg_id
        )
        self._accept(message)
        if self.event_url:
            task = asyncio.get_running_loop().create_task(self._send_event(message, self.event_url))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": int(msgid)})

    async def _wecom_send(self, request: web.Request) -> web.Response:
        body = await self._message_request(WECOM, request)
        if body.get("agentid") != self.agentid:
            raise _Refused(40056, "invalid agentid")
        msgtype = body.get("msgtype")
        fields = body.get(str(msgtype))
        if msgtype not in ("text", "textcard") or not isinstance(fields, dict):
            raise _Refused(40008, "invalid message type")
        limits = (
            {"content": TEXT_BYTES}
            if msgtype == "text"
            else {"title": TITLE_BYTES, "description": DESCRIPTION_BYTES, "url": 2048}
        )
        truncated = False
        for name, limit in limits.items():
            value = fields.get(name)
            if not isinstance(value, str) or not value.strip():
                raise _Refused(40058, f"invalid parameter: {msgtype}.{name}")
            truncated = truncated or len(value.encode()) > limit
        users = str(body.get("touser", "")).split("|")
        invalid = [u for u in users if not u or u.casefold() in self.unknown_users]
        valid = [u for u in users if u and u.casefold() not in self.unknown_users]
        if not valid:
            raise _Refused(81013, "user & party & tag all invalid", invaliduser="|".join(invalid))
        msgid = self._rng.randbytes(24).hex()
        for user in valid:
            self._accept(
                SentMessage(
                    WECOM,
                    user,
                    msgid,
                    url=str(fields.get("url", "")),
                    msgtype=str(msgtype),
                    textcard=fields if msgtype == "textcard" else {},
                    content=str(fields.get("content", "")),
                    truncated=truncated,
                )
            )
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "invaliduser": "|".join(invalid),
                "invalidparty": "",
                "invalidtag": "",
                "unlicenseduser": "",
                "msgid": msgid,
                "response_code": "",
            }
        )

    def _accept(self, message: SentMessage) -> None:
        self.sent.append(message)
        if len(self.sent) > self._retain:  # long drills and benchmarks: forget the oldest tenth
            del self.sent[: len(self.sent) - self._retain + self._retain // 10]

    # ---- result events ----

    async def _send_event(self, message: SentMessage, url: str) -> None:
        """POST the TEMPLATESENDJOBFINISH event for `message`, retrying a few times, then drop it."""
        if self._session is None:
            return
        status = "failed:user block" if message.touser in self.blocked else "success"
        xml = (
            f"<xml><ToUserName><![CDATA[{SANDBOX_ORIGINAL_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[{message.touser}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{message.msgid}</MsgID>"
            f"<Status><![CDATA[{status}]]></Status></xml>"
        )
        reason = ""
        for attempt in range(1, self.event_attempts + 1):
            timestamp, nonce = str(int(time.time())), str(self._rng.randrange(10**9, 10**10))
            signed = URL(url).update_query(
                signature=wechat_signature(self.event_token, timestamp, nonce),
                timestamp=timestamp,
                nonce=nonce,
                openid=message.touser,
            )
            try:
                async with self._session.post(
                    signed, data=xml.encode(), headers={"Content-Type": "text/xml"}
                ) as response:
                    await response.read()
                    if response.status < 300:
                        message.event_status = status
                        return
                    reason = f"HTTP {response.status}"
                    if response.status < 500:
                        break  # the same bytes would get the same answer
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            if attempt < self.event_attempts:
                await asyncio.sleep(self.event_backoff * attempt)
        self.events_dropped += 1
        log.warning("sandbox WeChat event for msgid %s dropped after %s", message.msgid, reason)


def _check_field(key: str, value: object) -> None:
    """Raise 47003 if a template field breaks WeChat's 2023 value rules."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), str) or not value["value"]:
        raise _Refused(47003, f"argument invalid! data.{key}.value is empty")
    text: str = value["value"]
    match = _FIELD_KIND.fullmatch(key)
    kind = match.group(1) if match else ""
    if (
        (kind == "thing" and (len(text) > 20 or "\n" in text))
        or (kind == "phrase" and len(text) > 5)
        or (kind == "time" and not all(_is_time(part.strip()) for part in text.split("~")))
    ):
        raise _Refused(47003, f"argument invalid! data.{key}.value invalid")


def _is_time(text: str) -> bool:
    for layout in _TIME_FORMATS:
        try:
            datetime.strptime(text, layout)  # only a format check
        except ValueError:
            continue
        return True
    return False


@asynccontextmanager
async def run_wechat_sandbox(
    sandbox: WechatSandbox, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve `sandbox` on `host:port` (0: any free port) and yield its base URL, e.g. `http://127.0.0.1:43121`.

    Raises:
        OSError: the address cannot be bound.
    """
    async with serve(sandbox.app(), host, port) as url:
        yield url


def sandbox_wechat(wechat: WechatSettings, base_url: str, token: str = SANDBOX_TOKEN) -> WechatSettings:
    """`wechat` pointed at a sandbox serving on `base_url`, with the drill account's credentials."""
    return replace(
        wechat,
        base_url=base_url,
        appid=SANDBOX_APPID,
        secret=SANDBOX_SECRET,
        template_id=SANDBOX_TEMPLATE_ID,
        token=token,
    )


def sandbox_wecom(wecom: WecomSettings, base_url: str) -> WecomSettings:
    """`wecom` pointed at a sandbox serving on `base_url`, with the drill corp's credentials."""
    return replace(
        wecom, base_url=base_url, corpid=SANDBOX_CORPID, secret=SANDBOX_CORPSECRET, agentid=SANDBOX_AGENTID
    )
