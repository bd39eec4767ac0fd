import asyncpg

from tests.helpers import wait_until


async def test_template_has_outbox(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        count = await connection.fetchval("SELECT count(*) FROM outbox")
    finally:
        await connection.close()
    assert count == 0


async def test_broker_round_trip(settings) -> None:
    from broker.connection import aiomqtt_client

    received = []
    async with aiomqtt_client(settings) as client:
        await client.subscribe(f"{settings.topic_root}/ping", qos=1)
        await client.publish(f"{settings.topic_root}/ping", b"hi", qos=1)
        async for message in client.messages:
            received.append(message.payload)
            break
    assert received == [b"hi"]
