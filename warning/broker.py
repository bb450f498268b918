"""The MQTT broker: the one at `mqtt.url`, or an embedded amqtt broker on loopback; plus a liveness probe."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from warning.config import MqttSettings, redact_url
from warning.errors import BrokerError
from warning.i18n import t

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    """Where MQTT clients connect: host, port, optional credentials and TLS."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    embedded: bool = False

    @property
    def url(self) -> str:
        """The address as a URL with the password redacted (for logs and /readyz)."""
        scheme = "mqtts" if self.tls else "mqtt"
        auth = (
            f"{self.username}:***@"
            if self.username and self.password
            else (f"{self.username}@" if self.username else "")
        )
        return f"{scheme}://{auth}{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """Parse `mqtt://[user[:password]@]host[:port]` (`mqtts://` for TLS, default ports 1883/8883).

        Raises:
            BrokerError: the URL has no host or a bad port.
        """
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            port = -1
        if not parts.hostname or port <= 0:
            raise BrokerError(t("MQTT 地址无效：{u}", "invalid MQTT URL: {u}", u=redact_url(url)))
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    variable = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 10)
    body = variable + payload
    length = len(body)
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x10]) + bytes(encoded) + body


async def probe(address: BrokerAddress, within: float = 2.0) -> None:
    """Open an MQTT session (CONNECT → CONNACK) and close it: proves the broker is up and accepts us.

    Raises:
        BrokerError: no connection, no CONNACK in time, or the broker refused the session.
    """
    writer = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(
                address.host, address.port, ssl=address.tls or None
            )
            writer.write(
                _connect_packet(
                    f"warning-probe-{os.getpid()}-{id(writer):x}", address.username, address.password
                )
            )
            await writer.drain()
            connack = await reader.readexactly(4)
            writer.write(b"\xe0\x00")  # DISCONNECT
            await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise BrokerError(
            t(
                "无法连接 MQTT 代理 {u}：{e}",
                "cannot reach the MQTT broker at {u}: {e}",
                u=address.url,
                e=exc or type(exc).__name__,
            )
        ) from exc
    finally:
        if writer is not None:
            writer.close()
    if connack[0] != 0x20 or connack[3] != 0:
        raise BrokerError(
            t(
                "MQTT 代理 {u} 拒绝连接（返回码 {c}）",
                "the MQTT broker at {u} refused the session (code {c})",
                u=address.url,
                c=connack[3],
            )
        )


class EmbeddedBroker:
    """An amqtt broker on loopback for the embedded default (MQTT 3.1.1, anonymous, loopback only)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    async def start(self) -> BrokerAddress:
        """Start listening; with port 0 the system picks a free port.

        Raises:
            BrokerError: the port is taken or the broker cannot start.
        """
        from amqtt.broker import Broker  # amqtt is heavy to import; only the embedded default needs it

        class _Broker(Broker):  # type: ignore[misc]
            """amqtt 0.12, on every connect, replays retained messages for *every* topic filter that any
            client subscribed to, to the connecting client — so a loudspeaker got other devices' statuses
            on its command topic. MQTT 3.1.1 (3.3.1.3) sends retained messages only for the session's own
            matching subscriptions; this restores that. Returning without awaiting also keeps amqtt's
            loop over its subscription dict from being interrupted by other clients subscribing."""

            async def _publish_retained_messages_for_subscription(
                self, subscription: Any, session: Any
            ) -> None:
                subscribers = self._subscriptions.get(subscription[0], [])
                if any(s.client_id == session.client_id for s, _ in subscribers):
                    await super()._publish_retained_messages_for_subscription(subscription, session)

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = _Broker(config)
        try:
            await broker.start()
        except Exception as exc:  # amqtt wraps every start failure (e.g. EADDRINUSE) in its own BrokerError
            raise BrokerError(
                t(
                    "内置 MQTT 代理无法在 {h}:{p} 启动：{e}。端口被占用时请设置 mqtt.embedded_port"
                    "（WARNING_MQTT_EMBEDDED_PORT），或用 mqtt.url 指向已有的代理",
                    "the embedded MQTT broker cannot start on {h}:{p}: {e}. If the port is taken set "
                    "mqtt.embedded_port (WARNING_MQTT_EMBEDDED_PORT), or point mqtt.url at a running broker",
                    h=self.host,
                    p=self.port,
                    e=exc.__cause__ or exc,
                )
            ) from exc
        self._broker = broker
        sockets = broker._servers["default"].instance.sockets
        self.port = int(sockets[0].getsockname()[1])
        log.info("embedded mqtt broker started", extra={"host": self.host, "port": self.port})
        return BrokerAddress(self.host, self.port, embedded=True)

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
            log.info("embedded mqtt broker stopped")


@asynccontextmanager
async def open_broker(settings: MqttSettings, *, start_embedded: bool = True) -> AsyncIterator[BrokerAddress]:
    """Yield the broker's address: `mqtt.url`, or an embedded broker started for the duration.

    With `start_embedded=False` (a `warning worker` beside `warning serve`) and no URL, the address is
    the embedded broker that `warning serve` runs, which is not started here.
    A configured broker that is down does not stop the service from starting (loudspeaker commands wait
    in Redis until it is back); `/readyz` reports it.

    Raises:
        BrokerError: the URL is invalid or the embedded broker cannot start.
    """
    if settings.url or not start_embedded:
        address = (
            BrokerAddress.from_url(settings.url)
            if settings.url
            else BrokerAddress(settings.embedded_host, settings.embedded_port)
        )
        try:
            await probe(address)
        except BrokerError as exc:
            log.warning("mqtt broker not reachable at start-up: %s", exc)
        yield address
        return
    embedded = EmbeddedBroker(settings.embedded_host, settings.embedded_port)
    address = await embedded.start()
    try:
        yield address
    finally:
        await embedded.stop()
