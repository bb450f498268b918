"""The MQTT broker: the embedded amqtt broker, the real one, and the CONNECT/CONNACK probe."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import Servers, free_port
from warning.broker import BrokerAddress, EmbeddedBroker, open_broker, probe
from warning.config import MqttSettings
from warning.errors import BrokerError


async def _paho_round_trip(address: BrokerAddress, topic: str) -> bytes:
    """Publish and receive one message with paho-mqtt 2.x, the client the loudspeaker channel uses."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = loop.create_future()
    subscribed = asyncio.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{topic.replace('/', '-')}")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rc, p: loop.call_soon_threadsafe(subscribed.set)
    client.on_message = lambda c, u, msg: loop.call_soon_threadsafe(
        lambda: received.done() or received.set_result(msg.payload)
    )
    await asyncio.to_thread(client.connect, address.host, address.port)
    client.loop_start()
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        client.publish(topic, "播放".encode(), qos=1)
        return await asyncio.wait_for(received, 10)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_embedded_broker_carries_messages() -> None:
    """The embedded broker accepts the probe and routes a QoS 1 message between paho clients."""
    async with open_broker(MqttSettings(embedded_port=0)) as address:
        assert address.embedded and address.port > 0
        await probe(address)
        assert await _paho_round_trip(address, "warning-test/embedded") == "播放".encode()


async def test_real_broker_is_probed(servers: Servers) -> None:
    """With mqtt.url set, the configured broker is used and answers the probe (CI's Mosquitto)."""
    if servers.mqtt_url is None:
        pytest.skip("MQTT_URL not set: this run covers the embedded broker only")
    async with open_broker(MqttSettings(url=servers.mqtt_url)) as address:
        assert not address.embedded
        await probe(address)
        assert await _paho_round_trip(address, "warning-test/real") == "播放".encode()


async def test_probe_of_a_closed_port_fails_fast() -> None:
    """Nobody listening: BrokerError within the timeout, naming the address."""
    port = free_port()
    with pytest.raises(BrokerError, match=str(port)):
        await probe(BrokerAddress("127.0.0.1", port), within=2)


async def test_probe_of_a_non_mqtt_server_fails() -> None:
    """A TCP server that does not speak MQTT is not mistaken for a broker."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(BrokerError):
            await probe(BrokerAddress("127.0.0.1", port), within=2)


async def test_embedded_broker_on_a_taken_port_explains_the_fix() -> None:
    """A taken port is reported with the setting to change, not an amqtt traceback."""
    first = EmbeddedBroker("127.0.0.1", 0)
    address = await first.start()
    try:
        with pytest.raises(BrokerError, match="WARNING_MQTT_EMBEDDED_PORT"):
            await EmbeddedBroker("127.0.0.1", address.port).start()
    finally:
        await first.stop()


def test_broker_url_parsing() -> None:
    """mqtt:// and mqtts:// URLs give host, port (defaults 1883/8883) and credentials."""
    assert BrokerAddress.from_url("mqtt://127.0.0.1") == BrokerAddress("127.0.0.1", 1883)
    secure = BrokerAddress.from_url("mqtts://dev:p%40ss@broker.example:8884")
    assert (secure.host, secure.port, secure.username, secure.password, secure.tls) == (
        "broker.example",
        8884,
        "dev",
        "p@ss",
        True,
    )
    assert secure.url == "mqtts://dev:***@broker.example:8884"
    with pytest.raises(BrokerError):
        BrokerAddress.from_url("mqtt://:1883")


async def test_embedded_broker_sends_retained_only_to_matching_subscriptions() -> None:
    """A client connecting to the embedded broker gets no retained message for topics it did not subscribe to."""
    async with open_broker(MqttSettings(embedded_port=0)) as address:
        loop = asyncio.get_running_loop()
        retained_seen = asyncio.Event()
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retained-pub")
        # The broker runs on this event loop: every blocking paho call goes to a thread.
        await asyncio.to_thread(publisher.connect, address.host, address.port)
        publisher.loop_start()
        info = publisher.publish("w/speakers/a/status", b'{"online":true}', qos=1, retain=True)
        await asyncio.to_thread(info.wait_for_publish, 10)
        assert info.is_published()
        # Someone subscribes with a wildcard that matches the retained status …
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retained-watch")
        watcher.on_message = lambda c, u, m: loop.call_soon_threadsafe(retained_seen.set)
        await asyncio.to_thread(watcher.connect, address.host, address.port)
        watcher.subscribe("w/speakers/+/status", qos=1)
        watcher.loop_start()
        await asyncio.wait_for(retained_seen.wait(), 10)
        # … then a device subscribes only to its own command topic: it must receive nothing.
        got: list[str] = []
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retained-dev")
        device.on_message = lambda c, u, m: got.append(m.topic)
        await asyncio.to_thread(device.connect, address.host, address.port)
        device.subscribe("w/speakers/b/cmd", qos=1)
        device.loop_start()
        await asyncio.sleep(1.0)
        for client in (publisher, watcher, device):
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        assert got == []
