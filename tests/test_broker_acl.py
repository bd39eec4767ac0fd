"""The broker's ACL: the screen user reads only the public draw topics and publishes nowhere."""

import asyncio
import uuid

import aiomqtt
import pytest

from festival.services import Mosquitto

# How long a subscriber waits for a message that must not arrive; the same broker delivers an
# allowed message within milliseconds, which `probe_delivered` checks first.
QUIET_SECONDS = 1.0


def service_client(mosquitto: Mosquitto) -> aiomqtt.Client:
    c = mosquitto.credentials
    return aiomqtt.Client("127.0.0.1", mosquitto.port, username=c.service_user, password=c.service_password)


def screen_client(mosquitto: Mosquitto) -> aiomqtt.Client:
    c = mosquitto.credentials
    return aiomqtt.Client("127.0.0.1", mosquitto.port, username=c.screen_user, password=c.screen_password)


async def received(client: aiomqtt.Client, seconds: float) -> list[aiomqtt.Message]:
    messages: list[aiomqtt.Message] = []
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                messages.append(message)
    except TimeoutError:
        pass
    return messages


@pytest.mark.parametrize(
    "topic",
    ["festival/v1/draws/current", "festival/v1/draws/{id}/live", "festival/v1/payments/confirmed", "other/topic"],
)
async def test_screen_publish_denied(mosquitto: Mosquitto, topic: str) -> None:
    topic = topic.format(id=uuid.uuid4())
    async with service_client(mosquitto) as watcher, screen_client(mosquitto) as screen:
        await watcher.subscribe("#", qos=1)
        await screen.publish(topic, b"forged", qos=1)
        # The watcher's own message proves that it receives; the screen's must not be among them.
        await watcher.publish(f"test/{uuid.uuid4().hex}/probe", b"probe", qos=1)
        messages = await received(watcher, QUIET_SECONDS)

    assert any(m.payload == b"probe" for m in messages)
    assert not any(m.payload == b"forged" for m in messages)


@pytest.mark.parametrize("pattern", ["festival/v1/payments/#", "$SYS/#", "#"])
async def test_screen_subscribe_denied(mosquitto: Mosquitto, pattern: str) -> None:
    async with service_client(mosquitto) as service, screen_client(mosquitto) as screen:
        await screen.subscribe(pattern, qos=1)
        await service.publish("festival/v1/payments/confirmed", b"private", qos=1)
        messages = await received(screen, QUIET_SECONDS)

    assert not any(m.payload == b"private" for m in messages)
    assert not any(str(m.topic).startswith("$SYS") for m in messages)


async def test_screen_reads_draw_topics(mosquitto: Mosquitto) -> None:
    topic = f"festival/v1/draws/{uuid.uuid4()}/live"
    async with service_client(mosquitto) as service, screen_client(mosquitto) as screen:
        await screen.subscribe("festival/v1/draws/+/live", qos=1)
        await service.publish(topic, b"step", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(screen.messages))

    assert message.payload == b"step"


async def test_anonymous_client_refused(mosquitto: Mosquitto) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", mosquitto.port):
            pass


async def test_wrong_password_refused(mosquitto: Mosquitto) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, username="screen", password="wrong"):
            pass
