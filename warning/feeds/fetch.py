"""A safe HTTP GET for feeds and CAP documents: allow-listed hosts, vetted and pinned addresses, hard limits.

Each hop (the URL, then every redirect target) is checked the same way before any connection:

1. the scheme is http or https, and the host is one of `allowed_hosts` (exact, case-insensitive);
2. the host is turned into addresses here: an IP literal as written, a numeric IPv4 form that
   `inet_aton` would accept (`2130706433`, `0x7f.1`, `017700000001`) normalised to its address,
   any other name through the resolver (`getaddrinfo` by default);
3. unless `allow_private`, every address must be public: one loopback, private, link-local,
   multicast, reserved, unspecified or otherwise non-global address (also when wrapped as
   IPv4-mapped, 6to4, Teredo or NAT64 IPv6) refuses the hop;
4. the connection goes only to the vetted addresses: the hop's aiohttp connector gets a resolver
   that answers with them and nothing else, so a DNS answer that changes between the check and the
   connect (rebinding) is never used; the URL keeps the name, so `Host` and TLS SNI are the name.

Redirects are not followed by aiohttp: each `Location` becomes a new hop, up to `max_redirects`.
The body is limited while streaming (a larger `Content-Length` is refused before reading), one
deadline covers resolution, connection, redirects and body, the environment's proxies are ignored,
no cookies are kept and no compressed encoding is accepted (nothing can inflate past the limit).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from warning.errors import FetchError
from warning.i18n import t

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""`(host, port) -> addresses`: how names become IP addresses (tests pass a stub)."""

REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "warning-feeds/1"
_NUMERIC_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


async def fetch(
    url: str,
    *,
    allowed_hosts: Collection[str],
    allow_private: bool,
    max_bytes: int,
    timeout: float,  # noqa: ASYNC109 - one deadline for every hop, applied with asyncio.timeout inside
    max_redirects: int = 3,
    resolver: Resolver | None = None,
) -> bytes:
    """GET `url` and return its body, refusing anything unsafe before a connection is made.

    Raises:
        FetchError: the URL, a redirect target or a resolved address is refused; the server is
            unreachable or answers other than 2xx; the body is over `max_bytes`; `timeout` passed.
    """
    allowed = frozenset(_canonical_host(h) for h in allowed_hosts)
    resolve = resolver or _getaddrinfo
    current = url
    try:
        async with asyncio.timeout(timeout):
            for _hop in range(max_redirects + 1):
                host, port = _check_url(current, allowed)
                addresses = await _vetted_addresses(current, host, port, resolve, allow_private)
                location = await _get_once(current, host, addresses, max_bytes)
                if isinstance(location, bytes):
                    return location
                current = urljoin(current, location)
    except TimeoutError:
        raise FetchError(
            t("{u}：{s} 秒内未完成", "{u}: not done within {s}s", u=current, s=f"{timeout:g}"), url=current
        ) from None
    raise FetchError(
        t("{u}：重定向超过 {n} 次", "{u}: more than {n} redirects", u=url, n=max_redirects), url=current
    )


def _check_url(url: str, allowed: frozenset[str]) -> tuple[str, int]:
    """The URL's (host, port) when its scheme and host are allowed."""
    try:
        parts = urlsplit(url)
        host = _canonical_host(parts.hostname or "")
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError(t("{u}：地址无效", "{u}: not a valid URL", u=url), url=url) from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(
            t("{u}：只允许 http 和 https", "{u}: only http and https are allowed", u=url), url=url
        )
    if host not in allowed:
        raise FetchError(
            t(
                "{u}：主机 {h} 不在 allowed_hosts 中",
                "{u}: host {h} is not in allowed_hosts",
                u=url,
                h=host or "''",
            ),
            url=url,
        )
    return host, port


def _canonical_host(host: str) -> str:
    """Lower case without a trailing dot; an IP literal in its compressed form (`::ffff:7f00:1`)."""
    host = host.strip().strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def numeric_host(host: str) -> IPAddress | None:
    """The address a host denotes by itself: an IP literal, or an IPv4 number as `inet_aton` reads it.

    Raises:
        FetchError: the host looks like an IPv4 number but is not a valid one.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _NUMERIC_IPV4.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        raise FetchError(
            t("主机 {h} 不是有效的 IPv4 地址", "host {h} is not a valid IPv4 address", h=host), url=host
        ) from None


def refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused when private addresses are not allowed; None if public."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = refusal(embedded)
        return f"{reason} (IPv6 {address})" if reason else None
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not global", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def _getaddrinfo(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def _vetted_addresses(
    url: str, host: str, port: int, resolve: Resolver, allow_private: bool
) -> list[IPAddress]:
    """Every address `host` stands for, each checked; refuses the hop if any one is not allowed."""
    literal = numeric_host(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            answers = await resolve(host, port)
            addresses = [ipaddress.ip_address(a) for a in answers]
        except (OSError, ValueError) as exc:
            raise FetchError(
                t("{u}：无法解析主机 {h}：{e}", "{u}: cannot resolve host {h}: {e}", u=url, h=host, e=exc),
                url=url,
            ) from None
        if not addresses:
            raise FetchError(
                t("{u}：主机 {h} 没有地址", "{u}: host {h} has no address", u=url, h=host), url=url
            )
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason:
                raise FetchError(
                    t(
                        "{u}：拒绝连接 {h} 的地址 {a}（{r}）；仅在 allow_private = true 时允许",
                        "{u}: refused address {a} of {h} ({r}); allowed only with allow_private = true",
                        u=url,
                        h=host,
                        a=address,
                        r=reason,
                    ),
                    url=url,
                )
    return addresses


class _PinnedResolver(AbstractResolver):
    """Answers aiohttp with the vetted addresses of one host and refuses every other name."""

    def __init__(self, host: str, addresses: Sequence[IPAddress]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower().rstrip(".") != self._host:
            raise OSError(f"{host} was not vetted")
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._addresses
        ]

    async def close(self) -> None:
        return None


async def _get_once(url: str, host: str, addresses: Sequence[IPAddress], max_bytes: int) -> bytes | str:
    """One GET to the pinned addresses: the body, or the `Location` of a redirect."""
    connector = aiohttp.TCPConnector(
        resolver=_PinnedResolver(host, addresses),
        use_dns_cache=False,
        family=socket.AF_UNSPEC,
        force_close=True,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )
    try:
        async with session.get(url, allow_redirects=False) as response:
            if response.status in REDIRECTS:
                location = response.headers.get("Location", "")
                if not location:
                    raise FetchError(
                        t("{u}：重定向缺少 Location", "{u}: redirect without Location", u=url), url=url
                    )
                return location
            if not 200 <= response.status < 300:
                raise FetchError(
                    t(
                        "{u}：服务器返回 HTTP {s}",
                        "{u}: the server answered HTTP {s}",
                        u=url,
                        s=response.status,
                    ),
                    url=url,
                )
            if response.content_length is not None and response.content_length > max_bytes:
                raise _too_big(url, max_bytes)
            body = bytearray()
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > max_bytes:
                    raise _too_big(url, max_bytes)
            return bytes(body)
    except aiohttp.ClientError as exc:
        raise FetchError(t("{u}：请求失败：{e}", "{u}: request failed: {e}", u=url, e=exc), url=url) from None
    except OSError as exc:
        raise FetchError(
            t("{u}：连接失败：{e}", "{u}: connection failed: {e}", u=url, e=exc), url=url
        ) from None
    finally:
        await session.close()


def _too_big(url: str, max_bytes: int) -> FetchError:
    return FetchError(
        t("{u}：内容超过 {n} 字节", "{u}: the body is over {n} bytes", u=url, n=max_bytes), url=url
    )
