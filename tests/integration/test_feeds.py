"""Feeds end to end: real HTTP servers on loopback, real Redis, and the SSRF defences with a counted listener.

How the tests stay on loopback while exercising the production policy (`allow_private = false`):

- `network` replaces `socket.socket.connect` for the module. A connection to loopback goes through;
  a connection to `PUBLIC_IP` is rewritten to 127.0.0.1 on the same port ("the internet" is the test
  server); any other destination (10.x, 192.168.x, 169.254.169.254, …) is refused at the socket and
  recorded, and every test asserts that nothing was recorded. So even a broken fetcher cannot send a
  packet off this machine, and a fetcher that skipped its checks would be caught, not obeyed.
- `resolve` is the stub resolver handed to the fetcher: `alerts.example.cn` → `PUBLIC_IP` (a global
  address, so the fetcher's own policy lets it through exactly as it would in production), the
  `*.internal` names → private, link-local and mixed answers. The fetcher checks what the stub says;
  the socket guard decides where a connection really goes.
- `listener` is a plain TCP server on loopback that counts accepted connections. SSRF attempts aim
  at it (directly, by name, by numeric encodings, by redirect); a count of 0 proves that no
  connection reached it, and a control test with `allow_private = true` proves the count works.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from warning.cap import CapAlert
from warning.errors import AlertError, FetchError
from warning.feeds.fetch import fetch
from warning.feeds.poll import FeedPoller, PollOutcome
from warning.feeds.settings import FeedRule, FeedSettings
from warning.model import Level
from warning.store import Store

PUBLIC_HOST = "alerts.example.cn"
PUBLIC_IP = "93.184.216.34"  # global, so the fetcher allows it; the socket guard turns it into 127.0.0.1
RESOLVED = {
    PUBLIC_HOST: [PUBLIC_IP],
    "intranet.internal": ["10.0.0.5"],
    "router.internal": ["192.168.1.1"],
    "metadata.internal": ["169.254.169.254"],
    "mixed.internal": [PUBLIC_IP, "10.0.0.5"],  # one bad answer among good ones refuses the host
    "mapped.internal": ["::ffff:127.0.0.1"],
}
SENDER = "cma@example.cn"
SENT = "2026-08-01T08:00:00+08:00"


# ---------------------------------------------------------------- the network the tests live in


@dataclass
class Network:
    """What the socket guard saw: connections it refused because they would have left loopback."""

    refused: list[object] = field(default_factory=list)
    allowed_extra: set[tuple[str, int]] = field(default_factory=set)  # CI's Redis, if it is remote


def _redis_endpoints() -> set[tuple[str, int]]:
    url = os.environ.get("REDIS_URL", "")
    parts = urlsplit(url)
    if not parts.hostname:
        return set()
    port = parts.port or 6379
    return {
        (str(info[4][0]), port) for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    }


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Network]:
    """Every TCP connect in the test goes to loopback: PUBLIC_IP is rewritten to it, anything else is refused."""
    net = Network(allowed_extra=_redis_endpoints())
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def destination(sock: socket.socket, address: object) -> object:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return address
        host, port = str(address[0]), int(address[1])
        if host == PUBLIC_IP:
            return ("127.0.0.1", port)
        if ipaddress.ip_address(host.split("%")[0]).is_loopback or (host, port) in net.allowed_extra:
            return address
        net.refused.append(address)
        raise ConnectionRefusedError(f"test network: {address} is not loopback")

    def connect(sock: socket.socket, address: object) -> None:
        original_connect(sock, destination(sock, address))  # type: ignore[arg-type]

    def connect_ex(sock: socket.socket, address: object) -> int:
        return original_connect_ex(sock, destination(sock, address))  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield net
    assert net.refused == [], "a connection tried to leave loopback"


@dataclass
class StubResolver:
    """The fetcher's DNS: fixed answers from RESOLVED, counting how often each name was asked."""

    answers: dict[str, list[str]] = field(default_factory=lambda: dict(RESOLVED))
    asked: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host == "localhost":  # what the machine's own resolver says
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            return [str(info[4][0]) for info in infos]
        if host not in self.answers:
            raise OSError(f"stub resolver: unknown host {host}")
        return self.answers[host]


@pytest.fixture
def resolve() -> StubResolver:
    """A fresh stub resolver."""
    return StubResolver()


@dataclass
class Listener:
    """A loopback TCP server that counts the connections it accepts and answers each with `ok`."""

    port: int
    port6: int | None  # on ::1, when the machine has IPv6 loopback
    accepted: int = 0


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """A counting listener on 127.0.0.1 (and ::1 when available), port 0."""
    result = Listener(port=0, port6=None)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        result.accepted += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    servers = [await asyncio.start_server(answer, "127.0.0.1", 0)]
    result.port = servers[0].sockets[0].getsockname()[1]
    try:
        servers.append(await asyncio.start_server(answer, "::1", 0))
        result.port6 = servers[1].sockets[0].getsockname()[1]
    except OSError:
        pass
    yield result
    for server in servers:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------- the publisher's server


def cap(
    identifier: str,
    *,
    msg_type: str = "Alert",
    status: str = "Actual",
    event: str = "台风",
    code: str = "11B01",
    severity: str = "Extreme",
    certainty: str = "Observed",
    geocode: str = "330327000000",
    references: str = "",
    sent: str = SENT,
    info: bool = True,
) -> bytes:
    """A CMA-style CAP 1.2 message with one zh-CN `<info>` (or none, as a bare Cancel may have)."""
    refs = f"<references>{references}</references>" if references else ""
    document = f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{SENDER}</sender>
  <sent>{sent}</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {refs}
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>{event}</event>
    <urgency>Immediate</urgency>
    <severity>{severity}</severity>
    <certainty>{certainty}</certainty>
    <eventCode><valueName>CMA</valueName><value>{code}</value></eventCode>
    <expires>2026-08-02T08:00:00+08:00</expires>
    <headline>{event}预警</headline>
    <instruction>请低洼地区群众立即转移到村委会避灾点</instruction>
    <area>
      <areaDesc>示例县</areaDesc>
      <geocode><valueName>CPEAS Geographic Code</valueName><value>{geocode}</value></geocode>
    </area>
  </info>
</alert>
"""
    if not info:
        document = document[: document.index("  <info>")] + "</alert>\n"
    return document.encode()


def ref(identifier: str) -> str:
    return f"{SENDER},{identifier},{SENT}"


def atom(base: str, names: Sequence[str]) -> bytes:
    entries = "".join(
        f"""<entry><id>urn:test:{n}</id><title>{n}</title><updated>2026-08-01T08:00:00+08:00</updated>
<link rel="alternate" type="text/html" href="{base}/page/{n}"/>
<link rel="related" type="application/cap+xml" href="/cap/{n}.xml"/></entry>"""
        for n in names
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:test:feed</id><title>预警</title>
<updated>2026-08-01T08:00:00+08:00</updated>{entries}</feed>""".encode()


def rss(base: str, names: Sequence[str]) -> bytes:
    # The first item names its CAP by enclosure, the others by <link>: both are read.
    items = "".join(
        f"""<item><guid>urn:test:{n}</guid><title>{n}</title><pubDate>Sat, 01 Aug 2026 08:00:00 +0800</pubDate>
{f'<enclosure url="{base}/cap/{n}.xml" type="application/cap+xml" length="1"/>' if i == 0 else f"<link>{base}/cap/{n}.xml</link>"}
</item>"""
        for i, n in enumerate(names)
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>预警</title><link>{base}/</link>{items}</channel></rss>""".encode()


@dataclass
class Publisher:
    """The weather bureau's server: its feed entries and CAP documents can change between polls."""

    port: int
    caps: dict[str, bytes] = field(default_factory=dict)
    entries: list[str] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    hits: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{PUBLIC_HOST}:{self.port}"

    def feed(self, name: str = "feed.atom", **changes: object) -> FeedSettings:
        settings = FeedSettings(
            name="cma",
            url=f"{self.base}/{name}",
            format="rss" if name.endswith(".rss") else "atom",
            interval=60.0,
            rules=RULES,
            allowed_hosts=(PUBLIC_HOST,),
            allow_private=False,
            max_bytes=1 << 20,
            timeout=5.0,
        )
        return replace(settings, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def publisher(network: Network) -> AsyncIterator[Publisher]:
    """The publisher's aiohttp app on 127.0.0.1, reached as http://alerts.example.cn:PORT through the guard."""
    app = web.Application()
    state: list[Publisher] = []

    async def feed_atom(request: web.Request) -> web.Response:
        state[0].hits.append(request.path)
        assert request.host.startswith(PUBLIC_HOST), "the Host header must stay the name"
        return web.Response(body=atom(state[0].base, state[0].entries), content_type="application/atom+xml")

    async def feed_rss(request: web.Request) -> web.Response:
        return web.Response(body=rss(state[0].base, state[0].entries), content_type="application/rss+xml")

    async def cap_document(request: web.Request) -> web.Response:
        state[0].hits.append(request.path)
        body = state[0].caps.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/cap+xml")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to check up front
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"x" * 100)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await state[0].released.wait()
        return web.Response(text="late")

    app.router.add_get("/feed.atom", feed_atom)
    app.router.add_get("/feed.rss", feed_rss)
    app.router.add_get("/cap/{name}.xml", cap_document)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/big", big)
    app.router.add_get("/streamed", streamed)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.append(Publisher(port=port))
    yield state[0]
    state[0].released.set()
    await runner.cleanup()


RULES = (
    FeedRule(
        events=("11B01",),
        min_level=Level.RED,
        area_prefixes=("330327",),
        action="issue",
        audiences=("public",),
    ),
    FeedRule(events=("台风", "11B03"), min_level=Level.YELLOW, action="draft", audiences=("cadres",)),
)


@dataclass
class AlertService:
    """Stands in for the alert service behind `on_match`: records each call and answers with an id."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (identifier, msgType, decision)
    refuse: set[str] = field(default_factory=set)

    async def __call__(self, alert: CapAlert, rule: FeedRule, decision: str) -> str:
        if alert.identifier in self.refuse:
            raise AlertError("references an unknown alert")
        self.calls.append((alert.identifier, alert.msg_type.value, decision))
        return f"ours-{len(self.calls)}"


def by_entry(outcomes: list[PollOutcome]) -> dict[str, PollOutcome]:
    return {o.entry_id.removeprefix("urn:test:"): o for o in outcomes}


# ---------------------------------------------------------------- polling


async def test_atom_feed_changing_between_polls_and_a_restart(
    store: Store, publisher: Publisher, resolve: StubResolver
) -> None:
    """New alerts follow the rules, an Update and a Cancel follow what we did, repeats and restarts are duplicates."""
    service = AlertService()
    publisher.caps.update(
        red=cap("red"),  # red typhoon for our county → rule 1: issue
        orange=cap("orange", severity="Severe"),  # orange typhoon → rule 2: draft
    )
    publisher.entries[:] = ["red", "orange"]
    poller = FeedPoller(store, service, resolver=resolve)
    first = by_entry(await poller.poll_once(publisher.feed()))
    assert {k: o.decision for k, o in first.items()} == {"red": "issue", "orange": "draft"}
    assert first["red"].rule is RULES[0] and first["red"].alert_id == "ours-1"
    assert first["orange"].rule is RULES[1]
    assert first["red"].cap_ref == f"{publisher.base}/cap/red.xml"

    publisher.caps.update(
        # Downgraded to orange: no longer meets the `issue` rule, but it updates an issued alert.
        red_update=cap("red-2", msg_type="Update", severity="Severe", references=ref("red")),
        orange_cancel=cap("orange-3", msg_type="Cancel", references=ref("orange"), info=False),
        stray_cancel=cap(
            "stray", msg_type="Cancel", event="大风", code="11B06", references=ref("never-seen")
        ),
    )
    publisher.caps["red"] = cap("red")  # the same message served again
    publisher.entries[:] = ["red", "orange", "red_update", "orange_cancel", "stray_cancel"]
    second = by_entry(await poller.poll_once(publisher.feed()))
    assert {k: o.decision for k, o in second.items()} == {
        "red": "duplicate",
        "orange": "duplicate",
        "red_update": "issue",
        "orange_cancel": "draft",
        "stray_cancel": "ignored",
    }
    assert "issue" in second["red"].reason
    assert second["red_update"].rule is RULES[0]
    assert service.calls == [
        ("red", "Alert", "issue"),
        ("orange", "Alert", "draft"),
        ("red-2", "Update", "issue"),
        ("orange-3", "Cancel", "draft"),
    ]

    restarted = FeedPoller(store, AlertService(), resolver=resolve)
    third = await restarted.poll_once(publisher.feed())
    assert [o.decision for o in third] == ["duplicate"] * 5
    seen = await store.redis.hlen(store.keys.key("feeds", "seen"))
    assert seen == 5


async def test_rss_feed_reads_enclosures_and_links(
    store: Store, publisher: Publisher, resolve: StubResolver
) -> None:
    """An RSS 2.0 feed's CAP is read from an enclosure or from the item link, and decided like Atom's."""
    service = AlertService()
    publisher.caps.update(a=cap("rss-a"), b=cap("rss-b", severity="Moderate"))
    publisher.entries[:] = ["a", "b"]
    outcomes = by_entry(
        await FeedPoller(store, service, resolver=resolve).poll_once(publisher.feed("feed.rss"))
    )
    assert {k: (o.decision, o.cap_ref) for k, o in outcomes.items()} == {
        "a": ("issue", f"{publisher.base}/cap/a.xml"),
        "b": ("draft", f"{publisher.base}/cap/b.xml"),
    }


async def test_cap_format_feed_is_the_document_itself(
    store: Store, publisher: Publisher, resolve: StubResolver
) -> None:
    """With format `cap` the feed URL is one CAP message, decided without a second fetch."""
    publisher.caps["only"] = cap("only")
    feed = publisher.feed(url=f"{publisher.base}/cap/only.xml", format="cap")
    (outcome,) = await FeedPoller(store, AlertService(), resolver=resolve).poll_once(feed)
    assert (outcome.decision, outcome.cap_ref) == ("issue", feed.url)
    assert publisher.hits == ["/cap/only.xml"]


async def test_rules_match_event_code_level_area_and_certainty(
    store: Store, publisher: Publisher, resolve: StubResolver
) -> None:
    """The first rule whose event/code, minimum level, area prefix and certainty all hold decides; none means ignored."""
    publisher.caps.update(
        code_only=cap("c1", event="热带气旋", code="11B01"),  # red, our county, code 11B01 → issue
        other_county=cap(
            "c2", geocode="330326000000"
        ),  # red but elsewhere → falls to rule 2 (name 台风): draft
        province=cap("c3", geocode="330000000000"),  # the whole province covers 330327 → issue
        township=cap("c4", geocode="330327105000"),  # a township of ours → issue
        blue=cap("c5", severity="Minor"),  # below yellow → ignored
        rainstorm=cap("c6", event="暴雨", code="11B03", severity="Moderate"),  # rule 2 by code → draft
        heat=cap("c7", event="高温", code="11B09", severity="Extreme"),  # no rule names it → ignored
    )
    publisher.entries[:] = list(publisher.caps)
    certain = (
        FeedRule(events=("11B01",), min_level=Level.RED, area_prefixes=("330327",), certainties=("Likely",)),
        *RULES,
    )
    outcomes = by_entry(await FeedPoller(store, AlertService(), resolver=resolve).poll_once(publisher.feed()))
    assert {k: o.decision for k, o in outcomes.items()} == {
        "code_only": "issue",
        "other_county": "draft",
        "province": "issue",
        "township": "issue",
        "blue": "ignored",
        "rainstorm": "draft",
        "heat": "ignored",
    }
    assert outcomes["heat"].reason in ("no rule matches", "没有符合的规则")

    publisher.caps = {"likely": cap("c8", certainty="Likely"), "observed": cap("c9")}
    publisher.entries[:] = list(publisher.caps)
    outcomes = by_entry(
        await FeedPoller(store, AlertService(), resolver=resolve).poll_once(publisher.feed(rules=certain))
    )
    assert outcomes["likely"].rule is certain[0]  # the certainty rule comes first and holds
    assert outcomes["observed"].rule is certain[1]  # Observed is not Likely: the next rule decides


async def test_test_status_invalid_cap_and_missing_cap_are_not_passed_on(
    store: Store, publisher: Publisher, resolve: StubResolver
) -> None:
    """Test/Draft/System messages are ignored, a malformed CAP is invalid with the parser's reason, a 404 failed to fetch."""
    service = AlertService(refuse={"refused"})
    publisher.caps.update(
        test=cap("t1", status="Test"),
        draft=cap("t2", status="Draft"),
        system=cap("t3", status="System"),
        exercise=cap("t4", status="Exercise"),  # a drill goes on; the alert service marks it as one
        broken=cap("t5").replace(b"<scope>Public</scope>", b""),
        old=cap("t6").replace(b"cap:1.2", b"cap:1.1"),
        refused=cap("refused"),
    )
    publisher.entries[:] = [*publisher.caps, "missing"]
    outcomes = by_entry(await FeedPoller(store, service, resolver=resolve).poll_once(publisher.feed()))
    assert {k: o.decision for k, o in outcomes.items()} == {
        "test": "ignored",
        "draft": "ignored",
        "system": "ignored",
        "exercise": "issue",
        "broken": "invalid",
        "old": "invalid",
        "refused": "invalid",
        "missing": "fetch_failed",
    }
    assert "Test" in outcomes["test"].reason
    assert "scope" in outcomes["broken"].reason
    assert "1.1" in outcomes["old"].reason
    assert "404" in outcomes["missing"].reason
    assert service.calls == [("t4", "Alert", "issue")]


async def test_unreadable_feed_is_one_fetch_failure(
    store: Store, publisher: Publisher, resolve: StubResolver
) -> None:
    """A feed that is not Atom (here an RSS document) gives a single fetch_failed outcome naming the feed."""
    publisher.entries[:] = []
    feed = publisher.feed("feed.rss", format="atom")
    (outcome,) = await FeedPoller(store, AlertService(), resolver=resolve).poll_once(feed)
    assert (outcome.entry_id, outcome.decision, outcome.cap_ref) == ("", "fetch_failed", feed.url)


# ---------------------------------------------------------------- limits


async def test_oversize_bodies_are_refused(publisher: Publisher, resolve: StubResolver) -> None:
    """A body over max_bytes is refused, whether announced by Content-Length or only counted while streaming."""
    for path in ("/big", "/streamed"):
        with pytest.raises(FetchError, match="4096"):
            await fetch(
                f"{publisher.base}{path}",
                allowed_hosts=[PUBLIC_HOST],
                allow_private=False,
                max_bytes=4096,
                timeout=5,
                resolver=resolve,
            )
    body = await fetch(
        f"{publisher.base}/streamed",
        allowed_hosts=[PUBLIC_HOST],
        allow_private=False,
        max_bytes=5000,
        timeout=5,
        resolver=resolve,
    )
    assert body == b"x" * 5000


async def test_slow_server_is_refused_after_the_timeout(publisher: Publisher, resolve: StubResolver) -> None:
    """A server that never answers costs no more than the timeout."""
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"0\.3"):
        await fetch(
            f"{publisher.base}/slow",
            allowed_hosts=[PUBLIC_HOST],
            allow_private=False,
            max_bytes=1024,
            timeout=0.3,
            resolver=resolve,
        )
    assert time.monotonic() - started < 2


# ---------------------------------------------------------------- SSRF


async def test_listener_counts_a_connection_it_is_allowed_to_receive(
    listener: Listener, network: Network
) -> None:
    """Control: with allow_private the loopback listener is reached and counted, so a count of 0 means something."""
    body = await fetch(
        f"http://127.0.0.1:{listener.port}/",
        allowed_hosts=["127.0.0.1"],
        allow_private=True,
        max_bytes=1024,
        timeout=5,
    )
    assert body == b"ok"
    assert listener.accepted == 1


def ssrf_targets(listener: Listener) -> list[str]:
    p = listener.port
    targets = [
        f"http://127.0.0.1:{p}/",
        f"http://localhost:{p}/",  # the real resolver: /etc/hosts says loopback
        f"http://2130706433:{p}/",  # 127.0.0.1 as one decimal number
        f"http://0x7f.1:{p}/",  # hex and a short form
        f"http://017700000001:{p}/",  # octal
        f"http://127.1:{p}/",
        f"http://[::ffff:127.0.0.1]:{p}/",  # IPv4-mapped IPv6
        f"http://0.0.0.0:{p}/",
        f"http://intranet.internal:{p}/",  # 10.0.0.5
        f"http://router.internal:{p}/",  # 192.168.1.1
        f"http://metadata.internal:{p}/",  # 169.254.169.254
        f"http://mixed.internal:{p}/",  # one public and one private answer
        f"http://mapped.internal:{p}/",  # a name that resolves to ::ffff:127.0.0.1
        "http://169.254.169.254/latest/meta-data/",
    ]
    if listener.port6 is not None:
        targets.append(f"http://[::1]:{listener.port6}/")
    return targets


async def test_internal_addresses_are_refused_with_zero_connections(
    listener: Listener, network: Network, resolve: StubResolver
) -> None:
    """Loopback, private, link-local and numerically encoded addresses are refused before any connection is made."""
    for url in ssrf_targets(listener):
        host = urlsplit(url).hostname or ""
        stub = None if host == "localhost" else resolve  # localhost goes through the real getaddrinfo
        with pytest.raises(FetchError, match="allow_private") as caught:
            await fetch(
                url, allowed_hosts=[host], allow_private=False, max_bytes=1024, timeout=5, resolver=stub
            )
        assert caught.value.url == url
    assert listener.accepted == 0


async def test_redirects_to_internal_addresses_are_refused_with_zero_connections(
    listener: Listener, publisher: Publisher, resolve: StubResolver
) -> None:
    """A redirect from the allowed server is re-checked: internal targets and other hosts are refused unreached."""
    internal = ssrf_targets(listener)
    hosts = [PUBLIC_HOST, *(urlsplit(u).hostname or "" for u in internal)]
    for target in [*internal, "http://elsewhere.example.cn/", "file:///etc/passwd"]:
        with pytest.raises(FetchError) as caught:
            await fetch(
                f"{publisher.base}/redirect?to={target}",
                allowed_hosts=hosts,
                allow_private=False,
                max_bytes=1024,
                timeout=5,
                resolver=resolve,
            )
        assert not caught.value.url.startswith(publisher.base)  # refused at the redirect, not before
    assert listener.accepted == 0


async def test_redirects_are_followed_only_up_to_the_limit(
    publisher: Publisher, resolve: StubResolver
) -> None:
    """An allowed redirect is followed; a chain longer than max_redirects is refused."""
    publisher.caps["x"] = b"<x/>"
    target = f"{publisher.base}/cap/x.xml"
    once = f"{publisher.base}/redirect?to={target}"
    options = {"allowed_hosts": [PUBLIC_HOST], "allow_private": False, "max_bytes": 1024, "timeout": 5.0}
    assert await fetch(once, resolver=resolve, **options) == b"<x/>"  # type: ignore[arg-type]
    twice = f"{publisher.base}/redirect?to={publisher.base}/redirect%3Fto%3D{target}"
    with pytest.raises(FetchError, match="redirect"):
        await fetch(twice, resolver=resolve, max_redirects=1, **options)  # type: ignore[arg-type]


async def test_hosts_outside_the_allow_list_and_other_schemes_are_refused(
    network: Network, resolve: StubResolver
) -> None:
    """Only http(s) to an allowed host is fetched; nothing is resolved for a refused URL."""
    for url in (
        "http://other.example.cn/",
        "https://ALERTS.example.cn.evil.cn/",
        "ftp://alerts.example.cn/x",
    ):
        with pytest.raises(FetchError):
            await fetch(
                url,
                allowed_hosts=[PUBLIC_HOST],
                allow_private=False,
                max_bytes=1024,
                timeout=5,
                resolver=resolve,
            )
    assert resolve.asked == []


async def test_connection_is_pinned_to_the_vetted_address(
    publisher: Publisher, resolve: StubResolver
) -> None:
    """The name is resolved once and the connection uses that answer, so a rebinding DNS cannot redirect it."""
    publisher.caps["x"] = b"<x/>"
    answers = iter([[PUBLIC_IP], ["10.0.0.5"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> Sequence[str]:
        resolve.asked.append(host)
        return next(answers)

    body = await fetch(
        f"{publisher.base}/cap/x.xml",
        allowed_hosts=[PUBLIC_HOST],
        allow_private=False,
        max_bytes=1024,
        timeout=5,
        resolver=rebinding,
    )
    assert body == b"<x/>"
    assert resolve.asked == [PUBLIC_HOST]  # the network fixture also asserts 10.0.0.5 was never dialled


async def test_newest_first_feed_decides_the_alert_before_its_update(
    store: Store, publisher: Publisher, resolve: StubResolver
) -> None:
    """Entries are decided oldest `sent` first, so an Update listed above its Alert still follows it."""
    service = AlertService()
    publisher.caps.update(
        update=cap(
            "n-2",
            msg_type="Update",
            severity="Severe",
            references=ref("n-1"),
            sent="2026-08-01T09:00:00+08:00",
        ),
        alert=cap("n-1"),
    )
    publisher.entries[:] = ["update", "alert"]
    outcomes = await FeedPoller(store, service, resolver=resolve).poll_once(publisher.feed())
    assert [(o.entry_id, o.decision) for o in outcomes] == [
        ("urn:test:update", "issue"),
        ("urn:test:alert", "issue"),
    ]
    assert [call[0] for call in service.calls] == ["n-1", "n-2"]
