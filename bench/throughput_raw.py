"""Raw aiomqtt QoS 1 publisher and subscriber processes, the baseline of bench/pipeline_throughput.py.

    python -m bench.throughput_raw subscribe --url URL --topic TOPIC --count N --timeout SECONDS
    python -m bench.throughput_raw publish --url URL --topic TOPIC --count N --size BYTES

Both connect through `broker.connection.aiomqtt_client`, as the relay does, and run on uvloop, as
every platform component does. Each prints `{"ready": true}` once connected (the subscriber once
its SUBACK arrived) and then one JSON result line. The publisher starts publishing when a line
arrives on its stdin, so that its start-up is left out of the measurement. Each payload starts with
its index as 8 ASCII digits, so the subscriber counts lost and repeated messages. Times are
CLOCK_MONOTONIC (`time.monotonic()`), which all processes of one Linux machine share. `cpu` is
the process's own CPU time (`time.process_time()`) from its ready line to its result, because
the process has exited by the time the parent could read it.
"""

import argparse
import asyncio
import json
import sys
import time
import uuid

import uvloop

from broker.connection import aiomqtt_client
from festival.settings import Settings

# The relay's client settings: 100 QoS 1 messages in flight (Mosquitto's `max_inflight_messages`
# in broker/mosquitto.conf) and up to one batch of 500 publish calls waiting for their PUBACK.
MAX_INFLIGHT = 100
PUBLISH_WINDOW = 500
INDEX_DIGITS = 8


def payload(index: int, size: int) -> bytes:
    head = b"%0*d" % (INDEX_DIGITS, index)
    return head + b"x" * max(size - len(head), 0)


async def subscribe(url: str, topic: str, count: int, timeout: float) -> dict[str, object]:
    """Receive `count` messages on `topic`, or stop at `timeout`, and return how many arrived and when the last did."""
    seen = bytearray(count)
    received = 0
    repeated = 0
    last_receive = 0.0

    async with aiomqtt_client(Settings(mqtt_url=url), identifier=f"bench-raw-sub-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(topic, qos=1)
        print(json.dumps({"ready": True}), flush=True)
        cpu_start = time.process_time()

        try:
            async with asyncio.timeout(timeout):
                async for message in client.messages:
                    if not isinstance(message.payload, bytes):
                        continue
                    index = int(message.payload[:INDEX_DIGITS])
                    if seen[index]:
                        repeated += 1
                        continue
                    seen[index] = 1
                    received += 1
                    last_receive = time.monotonic()
                    if received == count:
                        break
        except TimeoutError:
            pass

    cpu = time.process_time() - cpu_start
    return {"received": received, "repeated": repeated, "last_receive": last_receive, "cpu": cpu}


async def publish(url: str, topic: str, count: int, size: int) -> dict[str, object]:
    """Publish `count` messages of `size` bytes at QoS 1, keeping `PUBLISH_WINDOW` calls open at once."""
    settings = Settings(mqtt_url=url)
    identifier = f"bench-raw-pub-{uuid.uuid4().hex[:8]}"
    async with aiomqtt_client(settings, identifier=identifier, max_inflight_messages=MAX_INFLIGHT) as client:
        client.pending_calls_threshold = PUBLISH_WINDOW * 2
        window = asyncio.Semaphore(PUBLISH_WINDOW)
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def publish_one(index: int) -> None:
            try:
                await client.publish(topic, payload(index, size), qos=1, timeout=30)
            finally:
                window.release()

        cpu_start = time.process_time()
        first_publish = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for index in range(count):
                await window.acquire()
                group.create_task(publish_one(index), name=f"raw-publish-{index}")
        last_puback = time.monotonic()
        cpu = time.process_time() - cpu_start

    return {"published": count, "first_publish": first_publish, "last_puback": last_puback, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("role", choices=["subscribe", "publish"])
    parser.add_argument("--url", required=True, help="broker URL, mqtt://user:password@127.0.0.1:PORT")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True, help="messages to publish or receive")
    parser.add_argument("--size", type=int, default=0, help="payload size in bytes (publish); shorter sizes still send the 8-digit index")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the subscriber waits at most (subscribe)")
    args = parser.parse_args()

    if args.role == "subscribe":
        result = uvloop.run(subscribe(args.url, args.topic, args.count, args.timeout))
    else:
        result = uvloop.run(publish(args.url, args.topic, args.count, args.size))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
