"""The loudspeaker simulator: N village loudspeakers as real MQTT clients speaking DESIGN §6.

Used by `warning speaker-sim`, `warning demo` and the tests. Each device is its own paho client (its own
TCP connection, client id = username = device id, a retained last will on its status topic), but none
has a network thread: paho's socket callbacks register each socket with the asyncio event loop
(`add_reader` → `loop_read`, `add_writer` → `loop_write`, one shared ticker for `loop_misc`), as in
paho's asyncio example. A thousand devices are a thousand sockets on one loop, not a thousand threads.
Only the blocking TCP connect runs in the default executor's few worker threads; the socket callbacks
it triggers there are handed to the loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from warning.broker import BrokerAddress
from warning.errors import BrokerError
from warning.i18n import t

log = logging.getLogger(__name__)

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
VOLUME = 80
FAULT = "amplifier"  # what a failing simulated device reports
_CONNECTS_AT_ONCE = 16  # blocking TCP connects in the executor at a time
_MISC_EVERY = 1.0  # seconds between keepalive checks (paho's loop_misc) of all devices
_KEEPALIVE = 60
_RECONNECT_MIN = 0.5  # seconds before a device that lost the broker tries again, doubling up to
_RECONNECT_MAX = 5.0


def _now() -> str:
    return datetime.now(CHINA).isoformat(timespec="milliseconds")


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _current(client: mqtt.Client, sock: object) -> bool:
    """Whether `sock` is still the client's socket (a callback handed to the loop may arrive late)."""
    return client.socket() is sock


@dataclass(eq=False)
class _Device:
    device_id: str
    client: mqtt.Client
    failing: bool
    ready: asyncio.Future[None]  # connected and subscribed to its cmd topic
    gone: asyncio.Future[None]  # disconnected (cleanly or not)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)  # cmd_id → the last ack sent for it
    playing: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # cmd_id → playback
    crashed: bool = False  # power cut: stays down
    reconnecting: asyncio.Task[None] | None = None


class SpeakerSimulator:
    """Simulated loudspeakers: they play commands, ack them, report status, and record what they got.

    `received[device]` lists every command document the device got (duplicates included);
    `played[device]` counts the commands it played to the end (each `repeat` times, `play_seconds` a play).
    Devices in `offline` never connect; a seeded `fail_rate` share of the others ack `failed`.
    """

    def __init__(
        self,
        address: BrokerAddress,
        devices: Sequence[str],
        *,
        topic_prefix: str = "warning",
        fail_rate: float = 0.0,
        offline: Collection[str] = (),
        play_seconds: float = 0.05,
        seed: int = 1,
    ) -> None:
        self.address = address
        self.devices = list(devices)
        self.topic_prefix = topic_prefix
        self.play_seconds = play_seconds
        self.offline = frozenset(offline)
        rng = random.Random(seed)
        # Drawn for every device in order, so the same seed fails the same devices whatever `offline` is.
        self.failing = frozenset(d for d in self.devices if rng.random() < fail_rate)
        self.received: dict[str, list[dict[str, Any]]] = {d: [] for d in self.devices}
        self.played: dict[str, int] = dict.fromkeys(self.devices, 0)
        self._devices: dict[str, _Device] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._misc: asyncio.Task[None] | None = None
        self._gate: asyncio.Semaphore | None = None
        self._stopping = False

    def topic(self, device_id: str, kind: str) -> str:
        return f"{self.topic_prefix}/speakers/{device_id}/{kind}"

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self, within: float = 60.0) -> None:
        """Connect every device that is not offline; return when all are subscribed to their commands.

        Raises:
            BrokerError: some devices could not connect or subscribe within `within` seconds.
        """
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        gate = self._gate = asyncio.Semaphore(_CONNECTS_AT_ONCE)
        self._stopping = False
        online = [d for d in self.devices if d not in self.offline]
        for device_id in online:
            self._devices[device_id] = self._new_device(device_id)
        self._misc = asyncio.create_task(self._tick(), name="speaker-sim-misc")

        async def connect(device: _Device) -> None:
            async with gate:
                try:
                    await asyncio.to_thread(
                        device.client.connect, self.address.host, self.address.port, _KEEPALIVE
                    )
                except OSError as exc:
                    if not device.ready.done():
                        device.ready.set_exception(exc)
            await device.ready

        results = await asyncio.wait_for(
            asyncio.gather(*(connect(d) for d in self._devices.values()), return_exceptions=True),
            within,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise BrokerError(
                t(
                    "{n} 个模拟喇叭无法连接 MQTT 代理 {u}：{e}",
                    "{n} simulated loudspeakers cannot connect to the MQTT broker at {u}: {e}",
                    n=len(failures),
                    u=self.address.url,
                    e=failures[0],
                )
            )
        log.info("speaker simulator started", extra={"devices": len(online), "offline": len(self.offline)})

    async def stop(self, within: float = 10.0) -> None:
        """Publish each device's offline status and disconnect it cleanly (so no last will is sent)."""
        self._stopping = True
        for device in self._devices.values():
            if device.reconnecting is not None:
                device.reconnecting.cancel()
            for task in device.playing.values():
                task.cancel()
            if device.client.is_connected():
                fault = FAULT if device.failing else None
                offline = {"v": 1, "online": False, "ts": _now(), "volume": VOLUME, "fault": fault}
                device.client.publish(
                    self.topic(device.device_id, "status"), _json(offline), qos=1, retain=True
                )
                device.client.disconnect()  # queued after the status, so the broker sees both in order
            elif not device.gone.done():
                device.gone.set_result(None)
        pending = [d.gone for d in self._devices.values()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), within)
        for device in self._devices.values():
            sock = device.client.socket()
            if sock is not None:  # did not finish its clean disconnect in time
                self._unwatch(sock)
                sock.close()
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
            self._misc = None
        self._devices.clear()

    async def crash(self, device_id: str, within: float = 10.0) -> None:
        """Drop a device's TCP connection without an MQTT DISCONNECT, as a power cut does (its will fires).

        Raises:
            KeyError: the device is not connected by this simulator.
        """
        device = self._devices[device_id]
        device.crashed = True
        sock = device.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)  # paho reads EOF on the loop and closes its side
        await asyncio.wait_for(asyncio.shield(device.gone), within)

    @property
    def connected(self) -> list[str]:
        """The devices connected now."""
        return [d.device_id for d in self._devices.values() if d.client.is_connected()]

    # -- one device ------------------------------------------------------------------------------------

    def _new_device(self, device_id: str) -> _Device:
        assert self._loop is not None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=device_id,
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        device = _Device(
            device_id,
            client,
            failing=device_id in self.failing,
            ready=self._loop.create_future(),
            gone=self._loop.create_future(),
        )
        client.username_pw_set(device_id, self.address.password if self.address.username else None)
        will = {"v": 1, "online": False, "ts": _now(), "volume": VOLUME, "fault": None}
        client.will_set(self.topic(device_id, "status"), _json(will), qos=1, retain=True)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.on_connect = lambda c, u, flags, rc, p: self._on_connect(device, rc)
        client.on_subscribe = lambda c, u, mid, rcs, p: self._settle(device.ready)
        client.on_disconnect = lambda c, u, flags, rc, p: self._on_disconnect(device, rc)
        client.on_message = lambda c, u, msg: self._on_command(device, msg.payload)
        return device

    def _on_connect(self, device: _Device, reason_code: ReasonCode) -> None:
        if reason_code.is_failure:
            if not device.ready.done():
                device.ready.set_exception(BrokerError(f"{device.device_id}: {reason_code}"))
            return
        fault = FAULT if device.failing else None
        status = {"v": 1, "online": True, "ts": _now(), "volume": VOLUME, "fault": fault}
        device.client.publish(self.topic(device.device_id, "status"), _json(status), qos=1, retain=True)
        device.client.subscribe(self.topic(device.device_id, "cmd"), qos=1)

    def _on_disconnect(self, device: _Device, reason_code: ReasonCode) -> None:
        self._settle(device.gone)
        if self._stopping or device.crashed or not reason_code.is_failure or not device.ready.done():
            return
        self._on_loop(self._schedule_reconnect, device)

    def _schedule_reconnect(self, device: _Device) -> None:
        assert self._loop is not None
        if self._stopping or (device.reconnecting is not None and not device.reconnecting.done()):
            return
        device.reconnecting = self._loop.create_task(self._reconnect(device))

    async def _reconnect(self, device: _Device) -> None:
        """Connect again after the broker went away, as device firmware does, with a growing pause."""
        assert self._gate is not None and self._loop is not None
        delay = _RECONNECT_MIN
        while not self._stopping:
            await asyncio.sleep(delay)
            if device.gone.done():
                device.gone = self._loop.create_future()
            try:
                async with self._gate:
                    await asyncio.to_thread(device.client.reconnect)
                return
            except OSError:
                delay = min(delay * 2, _RECONNECT_MAX)

    @staticmethod
    def _settle(future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)

    def _ack(self, device: _Device, cmd_id: str, status: str, **extra: Any) -> None:
        ack = {"v": 1, "cmd_id": cmd_id, "status": status, "ts": _now(), **extra}
        device.acks[cmd_id] = ack
        if device.client.is_connected():
            device.client.publish(self.topic(device.device_id, "ack"), _json(ack), qos=1)

    def _on_command(self, device: _Device, payload: bytes | bytearray) -> None:
        try:
            cmd = json.loads(payload)
            cmd_id = cmd["cmd_id"]
            if cmd.get("v") != 1 or not isinstance(cmd_id, str) or not cmd_id:
                raise ValueError("not a v1 command")
            expires = datetime.fromisoformat(cmd["expires"]) if cmd.get("expires") else None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("simulated speaker %s ignores a malformed command: %s", device.device_id, exc)
            return
        self.received[device.device_id].append(cmd)
        last = device.acks.get(cmd_id)
        if last is not None:  # a resend: never play twice, just tell the service where we are
            self._ack(
                device, cmd_id, last["status"], **{k: last[k] for k in ("plays", "detail") if k in last}
            )
            return
        if expires is not None and datetime.now(CHINA) >= expires:
            self._ack(device, cmd_id, "failed", plays=0, detail="expired")
            return
        if cmd.get("action") == "stop":
            for other_id, task in list(device.playing.items()):
                task.cancel()
                self._ack(device, other_id, "failed", plays=0, detail="stopped")
            self._ack(device, cmd_id, "played", plays=0, detail="stopped")
            return
        self._ack(device, cmd_id, "received")
        if device.failing:
            self._ack(device, cmd_id, "failed", plays=0, detail=FAULT)
            return
        repeat = cmd.get("repeat") if isinstance(cmd.get("repeat"), int) else 1
        task = asyncio.get_running_loop().create_task(self._play(device, cmd_id, max(1, repeat)))
        device.playing[cmd_id] = task

    async def _play(self, device: _Device, cmd_id: str, repeat: int) -> None:
        try:
            self._ack(device, cmd_id, "playing")
            await asyncio.sleep(self.play_seconds * repeat)
            self.played[device.device_id] += 1
            self._ack(device, cmd_id, "played", plays=repeat)
        finally:
            device.playing.pop(cmd_id, None)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_MISC_EVERY)
            for device in list(self._devices.values()):
                if device.client.socket() is not None:
                    device.client.loop_misc()

    # -- paho socket callbacks: run on the loop, or handed to it from a connecting executor thread -------

    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            callback(*args)
        elif self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(callback, *args)

    def _watch_read(self, client: mqtt.Client, sock: Any) -> None:
        assert self._loop is not None
        if not _current(client, sock):
            return  # closed meanwhile (a connect that failed in the executor)
        self._loop.add_reader(sock, client.loop_read)

    def _watch_write(self, client: mqtt.Client, sock: Any) -> None:
        assert self._loop is not None
        if not _current(client, sock):
            return  # closed meanwhile
        self._loop.add_writer(sock, client.loop_write)

    def _unwatch(self, sock: Any, *, read: bool = True) -> None:
        assert self._loop is not None
        with contextlib.suppress(ValueError, KeyError, OSError):
            if read:
                self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_read, client, sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch, sock)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_write, client, sock)

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(lambda: self._unwatch(sock, read=False))
