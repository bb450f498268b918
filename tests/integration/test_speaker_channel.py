"""The loudspeaker channel against a real MQTT broker, with simulated loudspeakers and mosquitto_sub.

The broker is CI's Mosquitto when MQTT_URL is set, else an embedded amqtt broker started per test. Every
test uses its own topic prefix, device ids and service client id, so runs never collide on a shared broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import struct
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import Servers, free_port
from warning.broker import BrokerAddress
from warning.channels.base import Message, Outcome
from warning.channels.liveness import speaker_status, status_key
from warning.channels.speaker import SpeakerChannel, acks_key, command_id
from warning.config import SpeakerSettings
from warning.errors import TransientDeliveryError
from warning.model import Level
from warning.sandbox.speakers import SpeakerSimulator
from warning.store import Store

COMMAND_KEYS = {
    "v",
    "cmd_id",
    "alert_id",
    "action",
    "level",
    "text",
    "audio_url",
    "repeat",
    "expires",
    "exercise",
}


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def devices(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-spk{i:05d}" for i in range(count)]


def speaker_message(
    device: str,
    *,
    alert: str = "alert-1",
    expires: datetime | None = None,
    exercise: bool = False,
    repeat: int = 3,
    action: str = "play",
) -> Message:
    return Message(
        key=f"{alert}:1:speaker:s:{device}",
        recipient=f"s:{device}",
        address=device,
        text="台风红色预警：请立即撤离到安置点。",
        alert_id=alert,
        version=1,
        level=Level.RED,
        exercise=exercise,
        expires=expires if expires is not None else datetime.now(UTC) + timedelta(hours=2),
        action=action,
        repeat=repeat,
    )


def forget_session(address: BrokerAddress, client_id: str) -> None:
    """Drop the persistent session a test's service client left on a shared broker."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        client.connect(address.host, address.port)
        client.loop(1.0)
        client.disconnect()
    except OSError:
        pass


@pytest.fixture
async def open_channel(
    broker: BrokerAddress, store: Store, prefix: str
) -> AsyncIterator[Callable[..., Awaitable[SpeakerChannel]]]:
    """Start speaker channels on the test broker; close them and drop their sessions afterwards."""
    opened: list[SpeakerChannel] = []

    async def start(**kwargs: Any) -> SpeakerChannel:
        settings = SpeakerSettings(
            client_id=f"svc-{prefix}-{len(opened)}", max_unacked=kwargs.pop("unacked", 1000)
        )
        channel = SpeakerChannel(broker, settings, topic_prefix=prefix, store=store, **kwargs)
        await channel.start()
        opened.append(channel)
        return channel

    yield start
    for channel in opened:
        await channel.aclose()
        await asyncio.to_thread(forget_session, broker, channel.settings.client_id)


@pytest.fixture
async def simulators() -> AsyncIterator[list[SpeakerSimulator]]:
    """Simulators a test starts are stopped afterwards even when it fails."""
    started: list[SpeakerSimulator] = []
    yield started
    for simulator in started:
        await simulator.stop()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


async def acks_in_redis(store: Store, cmd_ids: list[str]) -> dict[str, dict[str, Any]]:
    values = await store.redis.hmget(acks_key(store), cmd_ids)
    return {cmd: json.loads(raw) for cmd, raw in zip(cmd_ids, values, strict=True) if raw}


async def _status_count(store: Store, count: int) -> bool:
    await asyncio.sleep(0.1)
    return int(await store.redis.hlen(status_key(store))) >= count


async def test_command_counts_as_sent_after_puback_and_playback_is_acknowledged(
    broker: BrokerAddress, store: Store, prefix: str, open_channel: Any, simulators: list[SpeakerSimulator]
) -> None:
    """Each speaker gets its command, `send` reports SENT with the cmd_id, and received→playing→played acks reach Redis and on_ack."""
    names = devices(prefix, 3)
    simulator = SpeakerSimulator(broker, names, topic_prefix=prefix)
    simulators.append(simulator)
    await simulator.start()
    seen: list[tuple[str, str, str]] = []

    async def on_ack(device: str, ack: dict[str, Any]) -> None:
        seen.append((device, ack["cmd_id"], ack["status"]))

    channel = await open_channel(on_ack=on_ack)
    messages = [speaker_message(d) for d in names]
    results = await channel.send(messages)

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.provider_id for r in results] == [command_id(m.key) for m in messages]
    cmd_ids = [r.provider_id for r in results]

    async def all_played() -> bool:
        acks = await acks_in_redis(store, cmd_ids)
        return len(acks) == 3 and all(a["status"] == "played" for a in acks.values())

    await eventually(all_played)
    acks = await acks_in_redis(store, cmd_ids)
    assert {a["device"] for a in acks.values()} == set(names)
    assert all(a["plays"] == 3 for a in acks.values())
    await eventually(lambda: asyncio.sleep(0, len(seen) == 9))
    for device, cmd_id in zip(names, cmd_ids, strict=True):
        assert [s for d, c, s in seen if (d, c) == (device, cmd_id)] == ["received", "playing", "played"]
    assert simulator.played == dict.fromkeys(names, 1)


async def test_command_payload_matches_the_protocol(
    broker: BrokerAddress, prefix: str, open_channel: Any, simulators: list[SpeakerSimulator]
) -> None:
    """The command is exactly the DESIGN §6 document: its keys, types, exercise flag, and expires in +08:00."""
    (device,) = devices(prefix, 1)
    simulator = SpeakerSimulator(broker, [device], topic_prefix=prefix)
    simulators.append(simulator)
    await simulator.start()
    channel = await open_channel()
    expires = datetime(2099, 8, 1, 4, 0, tzinfo=UTC)
    message = speaker_message(device, expires=expires, exercise=True, repeat=2)

    cmd_id = await channel.deliver(message)

    await eventually(lambda: asyncio.sleep(0, bool(simulator.received[device])))
    command = simulator.received[device][0]
    assert set(command) == COMMAND_KEYS
    assert command == {
        "v": 1,
        "cmd_id": cmd_id,
        "alert_id": "alert-1",
        "action": "play",
        "level": "red",
        "text": message.text,
        "audio_url": None,
        "repeat": 2,
        "expires": "2099-08-01T12:00:00+08:00",
        "exercise": True,
    }
    assert isinstance(command["cmd_id"], str) and 8 <= len(command["cmd_id"]) <= 32


async def test_resend_has_the_same_cmd_id_and_plays_once(
    broker: BrokerAddress, store: Store, prefix: str, open_channel: Any, simulators: list[SpeakerSimulator]
) -> None:
    """Delivering the same key twice carries the same cmd_id; the device de-duplicates and plays once."""
    (device,) = devices(prefix, 1)
    simulator = SpeakerSimulator(broker, [device], topic_prefix=prefix)
    simulators.append(simulator)
    await simulator.start()
    channel = await open_channel()
    message = speaker_message(device)

    first = await channel.deliver(message)
    await eventually(lambda: asyncio.sleep(0, simulator.played[device] == 1))
    second = await channel.deliver(message)
    await eventually(lambda: asyncio.sleep(0, len(simulator.received[device]) == 2))
    await asyncio.sleep(0.3)  # time enough for a second playback, which must not happen

    assert first == second == command_id(message.key)
    assert simulator.played[device] == 1
    assert [c["cmd_id"] for c in simulator.received[device]] == [first, first]
    other = await channel.deliver(speaker_message(device, alert="alert-2"))
    assert other != first


async def test_expired_command_is_never_played(
    broker: BrokerAddress, store: Store, prefix: str, open_channel: Any, simulators: list[SpeakerSimulator]
) -> None:
    """A command that expired in flight is acked failed/expired by the device; `send` does not even publish one."""
    expired_device, late_device = devices(prefix, 2)
    simulator = SpeakerSimulator(broker, [expired_device, late_device], topic_prefix=prefix)
    simulators.append(simulator)
    await simulator.start()
    channel = await open_channel()
    past = datetime.now(UTC) - timedelta(seconds=1)

    cmd_id = await channel.deliver(speaker_message(expired_device, expires=past))
    (result,) = await channel.send([speaker_message(late_device, expires=past)])

    async def failed() -> bool:
        return (await acks_in_redis(store, [cmd_id])).get(cmd_id, {}).get("status") == "failed"

    await eventually(failed)
    assert (await acks_in_redis(store, [cmd_id]))[cmd_id]["detail"] == "expired"
    assert result.outcome is Outcome.EXPIRED
    await asyncio.sleep(0.2)
    assert simulator.played == {expired_device: 0, late_device: 0}
    assert simulator.received[late_device] == []


async def test_status_online_offline_and_last_will_are_tracked(
    broker: BrokerAddress, store: Store, prefix: str, open_channel: Any
) -> None:
    """Retained online status, the last will of a crashed device, and a clean stop's offline status land in Redis."""
    crashed, stopped, never = devices(prefix, 3)
    await open_channel()
    simulator = SpeakerSimulator(broker, [crashed, stopped, never], topic_prefix=prefix, offline={never})
    await simulator.start()
    try:

        async def online(want: dict[str, bool]) -> bool:
            status = await speaker_status(store, list(want))
            return all(status.get(d, {}).get("online") is up for d, up in want.items())

        await eventually(lambda: online({crashed: True, stopped: True}))
        status = await speaker_status(store, [crashed, stopped, never])
        assert never not in status
        assert set(status[crashed]) == {"online", "ts", "volume", "fault", "seen"}
        assert status[crashed]["volume"] == 80 and status[crashed]["fault"] is None

        await simulator.crash(crashed)
        await eventually(lambda: online({crashed: False, stopped: True}))
    finally:
        await simulator.stop()
    await eventually(lambda: online({crashed: False, stopped: False}))


# The 1,000 devices run in a child process, as real ones run elsewhere: sharing this process's GIL with
# paho's network thread would starve that thread, and the broker drops what its queue for us cannot hold.
SIMULATOR_PROCESS = """
import asyncio, json, sys, threading
from warning.broker import BrokerAddress
from warning.sandbox.speakers import SpeakerSimulator

async def main(host, port, prefix, count):
    names = [f"{prefix}-spk{i:05d}" for i in range(count)]
    simulator = SpeakerSimulator(BrokerAddress(host, port), names, topic_prefix=prefix, play_seconds=0.01)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await simulator.start()
    print(json.dumps({"connect": loop.time() - began, "threads": threading.active_count()}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    await simulator.stop()
    print(json.dumps({"played": simulator.played}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
"""


async def test_thousand_speakers_are_commanded_quickly(
    servers: Servers, broker: BrokerAddress, store: Store, prefix: str, open_channel: Any
) -> None:
    """1,000 simulated speakers each get one command, all PUBACKed and all reported played, within seconds."""
    # The embedded amqtt broker runs on this test's event loop and needs over a minute just to accept
    # 1,000 sessions with retained statuses; it gets 200. The 1,000 run against a real broker (CI).
    count = 1000 if servers.mqtt_url else 200
    names = devices(prefix, count)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SIMULATOR_PROCESS,
        *(broker.host, str(broker.port), prefix, str(count)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        started = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
        assert started["threads"] < 50  # a thread per device would be 1,000+
        played: set[str] = set()
        all_played = asyncio.Event()

        async def on_ack(device: str, ack: dict[str, Any]) -> None:
            if ack["status"] == "played":
                played.add(device)
                if len(played) == count:
                    all_played.set()

        channel = await open_channel(unacked=count, on_ack=on_ack)
        # As in service: the devices' retained statuses are in before an alert goes out.
        await eventually(lambda: _status_count(store, count), within=30)
        messages = [speaker_message(d, repeat=1) for d in names]

        began = time.perf_counter()
        results = await channel.send(messages)
        sent = time.perf_counter() - began
        # A default Mosquitto queues at most 1,000 messages per client and drops the rest of a burst of
        # 3,000 acks; as DESIGN §6 says, the service republishes what is not acked `played`, and the device
        # answers a repeated cmd_id with its latest ack without playing again.
        resent = 0
        for _ in range(4):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_played.wait(), 4)
            missing = [m for m in messages if m.address not in played]
            if not missing:
                break
            resent += len(missing)
            await channel.send(missing)
        done = time.perf_counter() - began
        print(
            f"\n{count} speakers: connect {started['connect']:.2f}s, all PUBACKed {sent:.2f}s, "
            f"all played acks {done:.2f}s, republished {resent}"
        )
        child.stdin.write(b"\n")
        summary = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))
    finally:
        if child.returncode is None:
            child.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), 15)
            if child.returncode is None:
                child.kill()
                await child.wait()

    assert [r.outcome for r in results] == [Outcome.SENT] * count
    assert summary["played"] == dict.fromkeys(names, 1)
    assert len(played) == count, f"{count - len(played)} played acks never reached the channel"
    acks = await acks_in_redis(store, [r.provider_id for r in results])
    assert sum(a["status"] == "played" for a in acks.values()) == count
    assert sent < 10 and done < 20


async def test_malformed_device_messages_are_ignored(
    broker: BrokerAddress, store: Store, prefix: str, open_channel: Any
) -> None:
    """Garbage on ack and status topics is logged and dropped; the channel keeps working and records the valid ack."""
    seen: list[dict[str, Any]] = []

    async def on_ack(device: str, ack: dict[str, Any]) -> None:
        seen.append(ack)

    channel = await open_channel(on_ack=on_ack)
    await channel.deliver(speaker_message(f"{prefix}-nobody"))  # returns once connected and subscribed
    device = f"{prefix}-noisy"
    garbage = [
        b"{not json",
        b"[1, 2]",
        b'{"v": 2, "cmd_id": "c1", "status": "played"}',
        b'{"v": 1, "cmd_id": "c1", "status": "exploded"}',
        b'{"v": 1, "status": "played"}',
        b'{"v": 1, "cmd_id": "c1", "status": "played", "plays": "three"}',
        "\xff".encode("latin-1"),
    ]
    good = {"v": 1, "cmd_id": "c1", "status": "played", "ts": "2026-08-01T12:00:00+08:00", "plays": 3}

    def publish_all() -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device)
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            for payload in garbage:
                client.publish(f"{prefix}/speakers/{device}/ack", payload, qos=1).wait_for_publish(5)
            client.publish(
                f"{prefix}/speakers/{device}/status", b'{"v":1,"online":"yes"}', qos=1
            ).wait_for_publish(5)
            client.publish(f"{prefix}/speakers/{device}/ack", json.dumps(good), qos=1).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()

    await asyncio.to_thread(publish_all)
    await eventually(lambda: asyncio.sleep(0, bool(seen)))
    await asyncio.sleep(0.2)
    assert seen == [good]
    await channel.check()
    assert (await acks_in_redis(store, ["c1"]))["c1"]["status"] == "played"
    assert await speaker_status(store, [device]) == {}


async def test_mosquitto_sub_sees_one_play_per_speaker(
    broker: BrokerAddress, prefix: str, open_channel: Any
) -> None:
    """The stock mosquitto_sub client, subscribed to every cmd topic, receives exactly one play per speaker."""
    executable = shutil.which("mosquitto_sub")
    if executable is None:
        pytest.fail(
            "mosquitto_sub not found: install mosquitto-clients (apt-get install -y mosquitto-clients)"
        )
    names = devices(prefix, 20)
    channel = await open_channel()
    probe = f"{prefix}/probe"
    await channel.deliver(speaker_message(f"{prefix}-warmup"))  # connected; now publish the retained probe

    def retain_probe(payload: bytes) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-probe")
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            client.publish(probe, payload, qos=1, retain=True).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()

    await asyncio.to_thread(retain_probe, b"ready")
    sub = await asyncio.create_subprocess_exec(
        executable,
        *("-h", broker.host, "-p", str(broker.port), "-q", "1", "-v", "-W", "30"),
        *("-t", f"{prefix}/speakers/+/cmd", "-t", probe, "-C", str(len(names) + 1)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert sub.stdout is not None
        # The retained probe arrives only once the subscriptions are in place (the cmd topic's first).
        first = await asyncio.wait_for(sub.stdout.readline(), 15)
        assert first.decode().strip() == f"{probe} ready"
        results = await channel.send([speaker_message(d) for d in names])
        assert [r.outcome for r in results] == [Outcome.SENT] * len(names)
        out, err = await asyncio.wait_for(sub.communicate(), 20)
        assert sub.returncode == 0, err.decode()
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
        await asyncio.to_thread(retain_probe, b"")

    per_device: dict[str, list[dict[str, Any]]] = {}
    for line in out.decode().splitlines():
        topic, _, payload = line.partition(" ")
        device = topic.removeprefix(f"{prefix}/speakers/").removesuffix("/cmd")
        per_device.setdefault(device, []).append(json.loads(payload))
    assert sorted(per_device) == names
    for device, commands in per_device.items():
        assert len(commands) == 1
        assert set(commands[0]) == COMMAND_KEYS
        assert commands[0]["action"] == "play"
        assert commands[0]["cmd_id"] == command_id(f"alert-1:1:speaker:s:{device}")


async def _silent_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speaks just enough MQTT to accept a session and subscriptions, but never acknowledges a publish."""
    try:
        while True:
            header = await reader.readexactly(1)
            length, shift = 0, 0
            while True:
                byte = (await reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            body = await reader.readexactly(length)
            kind = header[0] & 0xF0
            if kind == 0x10:  # CONNECT → CONNACK accepted
                writer.write(b"\x20\x02\x00\x00")
            elif kind == 0x80:  # SUBSCRIBE → SUBACK granting QoS 1 to each filter
                mid = body[:2]
                filters, pos = 0, 2
                while pos < len(body):
                    (size,) = struct.unpack("!H", body[pos : pos + 2])
                    pos += 2 + size + 1
                    filters += 1
                writer.write(bytes([0x90, 2 + filters]) + mid + b"\x01" * filters)
            elif kind == 0xC0:  # PINGREQ
                writer.write(b"\xd0\x00")
            await writer.drain()  # PUBLISH: swallowed, no PUBACK
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def test_publish_without_puback_is_not_counted_as_sent(store: Store, prefix: str) -> None:
    """A broker that takes the publish but never PUBACKs it yields TRANSIENT, never SENT."""
    server = await asyncio.start_server(_silent_broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = SpeakerChannel(
        BrokerAddress("127.0.0.1", port),
        SpeakerSettings(client_id=f"svc-{prefix}"),
        topic_prefix=prefix,
        store=store,
        puback_timeout=0.5,
    )
    async with server:
        await channel.start()
        try:
            (result,) = await channel.send([speaker_message(f"{prefix}-spk")])
        finally:
            await channel.aclose()
    assert result.outcome is Outcome.TRANSIENT
    assert "PUBACK" in result.detail


async def test_broker_down_is_transient_not_fatal(store: Store, prefix: str) -> None:
    """With no broker listening, start() succeeds, check() raises and a delivery is TRANSIENT after a bounded wait."""
    channel = SpeakerChannel(
        BrokerAddress("127.0.0.1", free_port()),
        SpeakerSettings(client_id=f"svc-{prefix}"),
        topic_prefix=prefix,
        store=store,
        connect_wait=0.3,
    )
    await channel.start()
    try:
        with pytest.raises(TransientDeliveryError):
            await channel.check()
        began = time.monotonic()
        (result,) = await channel.send([speaker_message(f"{prefix}-spk")])
        assert result.outcome is Outcome.TRANSIENT and not result.unexpected
        assert time.monotonic() - began < 3
    finally:
        await channel.aclose()
