"""The loudspeaker channel: commands to village loudspeakers over MQTT (DESIGN §6), acks and liveness back.

paho-mqtt's network thread (`loop_start`) lives only in this module. Everything it reports crosses into
asyncio through `loop.call_soon_threadsafe`, so every piece of state below is touched on the event loop
only; the thread merely parses device messages and hands them over. A command counts as sent when its
PUBACK arrives. The session is persistent (`clean_session=False`, QoS 1 subscriptions), so acks that
devices send while the service is down wait at the broker, and paho resends unacknowledged commands
after a reconnect; devices de-duplicate by `cmd_id`, which is derived from the delivery's idempotency key.

A broker drops what does not fit its queue for this client (Mosquitto: `max_queued_messages`, 1000 by
default); thousands of devices acking at once need it raised, and what is lost anyway is recovered by
republishing the command, which the device answers with its latest ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from redis.exceptions import RedisError

from warning.broker import BrokerAddress
from warning.channels.base import BaseChannel, Capability, ChannelLimits, Message
from warning.channels.liveness import status_key
from warning.config import SpeakerSettings
from warning.errors import PermanentDeliveryError, TransientDeliveryError
from warning.i18n import t
from warning.store import Store

log = logging.getLogger(__name__)

# China has had no daylight saving time since 1991: a fixed offset is Asia/Shanghai, without tzdata.
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
PROTOCOL_VERSION = 1
ACK_STATUSES = frozenset({"received", "playing", "played", "failed"})
MAX_TEXT = 2000
_KEEPALIVE = 30
_CLOSE_WITHIN = 5.0  # seconds aclose waits for the last device reports to reach redis
_FLUSH_RETRY = 1.0  # seconds between attempts to write device reports while Redis is unreachable

AckHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


def command_id(key: str) -> str:
    """The command id for a delivery: the same idempotency key always gives the same id (devices de-duplicate)."""
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def command_payload(message: Message, cmd_id: str) -> dict[str, Any]:
    """The DESIGN §6 command document for one message."""
    expires = message.expires.astimezone(CHINA).isoformat(timespec="seconds") if message.expires else None
    return {
        "v": PROTOCOL_VERSION,
        "cmd_id": cmd_id,
        "alert_id": message.alert_id,
        # An all-clear is a `play` of its own text to the device (DESIGN §6 knows play and stop only).
        "action": "play" if message.action == "clear" else message.action,
        "level": message.level.value,
        "text": message.text,
        "audio_url": None,
        "repeat": message.repeat,
        "expires": expires,
        "exercise": message.exercise,
    }


def now_iso() -> str:
    return datetime.now(CHINA).isoformat(timespec="milliseconds")


def acks_key(store: Store) -> str:
    return store.keys.key("speaker", "acks")


def commands_key(store: Store) -> str:
    """HASH cmd_id → the delivery key it carries, so a device's ack finds its delivery."""
    return store.keys.key("speaker", "cmds")


async def delivery_of(store: Store, cmd_id: str) -> str | None:
    """The delivery key (`{alert}:{version}:{ledger}:{recipient}`) a command was sent for, if known."""
    key = await store.redis.hget(commands_key(store), cmd_id)
    return str(key) if key is not None else None


def _compact(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _flat(mapping: dict[str, str]) -> list[str]:
    return [item for pair in mapping.items() for item in pair]


def _parse_status(payload: bytes | bytearray) -> dict[str, Any] | None:
    """A device's status report in the form we store, or None if it is not a v1 status."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("v") != PROTOCOL_VERSION
        or not isinstance(doc.get("online"), bool)
    ):
        return None
    volume = doc.get("volume")
    fault = doc.get("fault")
    return {
        "online": doc["online"],
        "ts": doc["ts"] if isinstance(doc.get("ts"), str) else None,
        "volume": volume if isinstance(volume, int) and not isinstance(volume, bool) else None,
        "fault": fault if isinstance(fault, str) else None,
        "seen": now_iso(),
    }


def _parse_ack(payload: bytes | bytearray) -> dict[str, Any] | None:
    """A device's ack as it sent it, or None if it is not a valid v1 ack."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if (
        not isinstance(doc, dict)
        or doc.get("v") != PROTOCOL_VERSION
        or not isinstance(doc.get("cmd_id"), str)
        or not doc["cmd_id"]
        or doc.get("status") not in ACK_STATUSES
    ):
        return None
    plays = doc.get("plays")
    if plays is not None and (not isinstance(plays, int) or isinstance(plays, bool)):
        return None
    return doc


class SpeakerChannel(BaseChannel):
    """Sends loudspeaker commands with QoS 1 and records the devices' acks and status in Redis."""

    name = "speaker"
    capabilities = Capability.TEXT | Capability.PLAYBACK

    def __init__(
        self,
        address: BrokerAddress,
        settings: SpeakerSettings,
        *,
        topic_prefix: str,
        store: Store,
        on_ack: AckHandler | None = None,
        connect_wait: float = 5.0,
        puback_timeout: float = 30.0,
    ) -> None:
        self.address = address
        self.settings = settings
        self.topic_prefix = topic_prefix
        self.store = store
        self.on_ack = on_ack
        self.connect_wait = connect_wait
        self.puback_timeout = puback_timeout
        self.limits = ChannelLimits(max_in_flight=settings.max_unacked, max_text=MAX_TEXT)
        self._speakers = f"{topic_prefix}/speakers/"
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Event | None = None
        self._gate: asyncio.Semaphore | None = None
        self._pubacks: dict[int, asyncio.Future[None]] = {}
        self._statuses: dict[str, str] = {}  # device id → status JSON, not yet written
        self._acks: list[tuple[str, dict[str, Any]]] = []  # (device id, ack), not yet written
        self._dirty: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._handoff: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._handoff_lock = threading.Lock()
        self._handoff_scheduled = False

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the MQTT client; it connects (and reconnects) in its own thread, so a broker that is
        down does not stop the service from starting: `deliver` waits for it, `check` reports it."""
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._connected = asyncio.Event()
        self._dirty = asyncio.Event()
        self._gate = asyncio.Semaphore(self.settings.max_unacked)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            await asyncio.to_thread(client.tls_set)  # reads the system CA bundle from disk
        client.max_inflight_messages_set(self.settings.max_unacked)
        # Commands left in paho's queue by a timeout count too, so the queue stays bounded.
        client.max_queued_messages_set(self.settings.max_unacked)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.connect_async(self.address.host, self.address.port, keepalive=_KEEPALIVE)
        client.loop_start()
        self._client = client
        self._writer = asyncio.create_task(self._write_reports(), name="speaker-reports")
        log.info("speaker channel started", extra={"broker": self.address.url})

    async def aclose(self) -> None:
        """Disconnect cleanly, stop paho's thread, and write the device reports still in memory."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)  # joins the network thread
        if self._connected is not None:
            self._connected.clear()
        for future in self._pubacks.values():
            if not future.done():
                future.cancel()
        self._pubacks.clear()
        writer, self._writer = self._writer, None
        if writer is not None and self._dirty is not None:
            # Asked to finish rather than cancelled: a cancel landing inside redis-py can be swallowed there.
            self._closing = True
            self._dirty.set()
            try:
                await asyncio.wait_for(asyncio.shield(writer), _CLOSE_WITHIN)
            except TimeoutError:
                writer.cancel()
                log.warning("speaker reports not written to redis before close")

    async def check(self) -> None:
        """Raise unless the client is connected to the broker now.

        Raises:
            TransientDeliveryError: not connected (broker down, unreachable, or refused the session).
        """
        if self._connected is None or not self._connected.is_set():
            raise TransientDeliveryError(
                t(
                    "未连接到 MQTT 代理 {u}",
                    "not connected to the MQTT broker at {u}",
                    u=self.address.url,
                ),
                retry_after=self.connect_wait,
            )

    # -- sending ---------------------------------------------------------------------------------------

    async def deliver(self, message: Message) -> str:
        """Publish the command to `{prefix}/speakers/{device}/cmd` (QoS 1); return its `cmd_id` after PUBACK.

        Raises:
            PermanentDeliveryError: the device id cannot be a topic level, or the text is too long.
            TransientDeliveryError: not connected within `connect_wait`, paho refused the publish (no
                connection, queue full), or no PUBACK within `puback_timeout` (resending is safe: the
                device de-duplicates by `cmd_id`).
        """
        device = message.address
        if not device or any(c in device for c in "/+#\0"):
            raise PermanentDeliveryError(
                t("喇叭设备号无效：{d!r}", "invalid loudspeaker device id: {d!r}", d=device)
            )
        if len(message.text) > MAX_TEXT:
            raise PermanentDeliveryError(
                t(
                    "喇叭文本过长（{n} 字，上限 {m}）",
                    "loudspeaker text too long ({n} characters, at most {m})",
                    n=len(message.text),
                    m=MAX_TEXT,
                )
            )
        client, connected, gate = self._client, self._connected, self._gate
        if client is None or connected is None or gate is None or self._loop is None:
            raise TransientDeliveryError(t("喇叭通道未启动", "the speaker channel is not started"))
        cmd_id = command_id(message.key)
        payload = _compact(command_payload(message, cmd_id)).encode()
        # Written before the publish: a device may ack faster than this coroutine resumes.
        await self.store.redis.hset(commands_key(self.store), cmd_id, message.key)
        async with gate:
            if not connected.is_set():
                try:
                    await asyncio.wait_for(connected.wait(), self.connect_wait)
                except TimeoutError:
                    await self.check()
            puback = self._loop.create_future()
            info = client.publish(f"{self._speakers}{device}/cmd", payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise TransientDeliveryError(
                    t(
                        "MQTT 发布被拒绝：{e}",
                        "MQTT publish refused: {e}",
                        e=mqtt.error_string(info.rc),
                    ),
                    retry_after=1.0,
                )
            # The PUBACK callback reaches the loop only after this coroutine yields, so no ack is missed.
            self._pubacks[info.mid] = puback
            try:
                await asyncio.wait_for(puback, self.puback_timeout)
            except TimeoutError:
                raise TransientDeliveryError(
                    t(
                        "{s} 秒内没有收到 MQTT 代理的确认（PUBACK）",
                        "no PUBACK from the MQTT broker within {s} s",
                        s=self.puback_timeout,
                    )
                ) from None
            finally:
                self._pubacks.pop(info.mid, None)
        return cmd_id

    # -- paho callbacks (network thread): hand over to the event loop, touch nothing else --------------

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` on the event loop, in order; one wake-up carries a whole burst of them.

        A wake-up per message would cost the loop a self-pipe write and a turn each; under a burst of
        thousands of acks that starves this thread of the GIL, and the broker, whose queue for us is
        bounded, drops what we do not PUBACK fast enough.
        """
        loop = self._loop
        if loop is None:
            return
        with self._handoff_lock:
            self._handoff.append((callback, args))
            if self._handoff_scheduled:
                return
            self._handoff_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop closed while paho was still reporting
            loop.call_soon_threadsafe(self._run_handoff)

    def _run_handoff(self) -> None:
        with self._handoff_lock:
            batch, self._handoff = self._handoff, []
            self._handoff_scheduled = False
        for callback, args in batch:
            callback(*args)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("mqtt broker refused the speaker channel: %s", reason_code)
            return
        # Subscribed before `connected` is set, so the broker routes acks before any command goes out.
        client.subscribe(
            [(f"{self._speakers}+/ack", 1), (f"{self._speakers}+/status", 1)],
        )
        log.info("speaker channel connected", extra={"session_present": flags.session_present})
        self._to_loop(self._mark_connected, True)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("speaker channel lost the mqtt broker (%s); reconnecting", reason_code)
        self._to_loop(self._mark_connected, False)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self._to_loop(self._puback, mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        device, _, kind = topic[len(self._speakers) :].partition("/")
        if not topic.startswith(self._speakers) or not device or kind not in ("ack", "status"):
            return
        # Parsed on the loop: this thread's one job is to read and PUBACK as fast as the broker sends.
        self._to_loop(self._device_report, device, kind, msg.payload)

    # -- on the event loop -----------------------------------------------------------------------------

    def _mark_connected(self, up: bool) -> None:
        if self._connected is None:
            return
        if up:
            self._connected.set()
        else:
            self._connected.clear()

    def _puback(self, mid: int) -> None:
        future = self._pubacks.get(mid)
        if future is not None and not future.done():
            future.set_result(None)

    def _device_report(self, device: str, kind: str, payload: bytes | bytearray) -> None:
        if kind == "status":
            if not payload:
                return  # a retained status being cleared
            status = _parse_status(payload)
            if status is None:
                log.warning("ignoring a malformed speaker status", extra={"device": device})
                return
            self._statuses[device] = _compact(status)
        else:
            ack = _parse_ack(payload)
            if ack is None:
                log.warning("ignoring a malformed speaker ack", extra={"device": device})
                return
            self._acks.append((device, ack))
        if self._dirty is not None:
            self._dirty.set()

    async def _write_reports(self) -> None:
        """Write device reports to Redis in batches (one round trip however many arrived meanwhile)."""
        assert self._dirty is not None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._flush()
            except (RedisError, OSError) as exc:
                if self._closing:
                    log.warning("speaker reports not written to redis before close: %s", exc)
                    return
                log.warning("cannot record speaker reports in redis, retrying: %s", exc)
                await asyncio.sleep(_FLUSH_RETRY)
                self._dirty.set()
            if self._closing and not (self._statuses or self._acks):
                return

    async def _flush(self) -> None:
        statuses, self._statuses = self._statuses, {}
        acks, self._acks = self._acks, []
        if not statuses and not acks:
            return
        latest = {
            ack["cmd_id"]: _compact(
                {
                    "device": device,
                    "status": ack["status"],
                    "ts": ack.get("ts"),
                    "plays": ack.get("plays"),
                    "detail": ack.get("detail"),
                    "seen": now_iso(),
                }
            )
            for device, ack in acks
        }
        try:
            async with self.store.redis.pipeline(transaction=False) as pipe:
                if statuses:
                    pipe.hset(status_key(self.store), items=_flat(statuses))
                if latest:
                    pipe.hset(acks_key(self.store), items=_flat(latest))
                await pipe.execute()
        except BaseException:
            # Put them back (newer reports that arrived meanwhile win) so nothing is lost to a Redis blip.
            self._statuses = {**statuses, **self._statuses}
            self._acks = acks + self._acks
            raise
        if self.on_ack is None:
            return
        for device, ack in acks:  # in arrival order: received, playing, played
            try:
                await self.on_ack(device, ack)
            except Exception:
                log.exception("speaker ack handler failed", extra={"device": device, "cmd_id": ack["cmd_id"]})
