"""A lean live screen for the benchmark: one asyncio Protocol per connection, no task per screen.

Speaks the part of MQTT 3.1.1 that the live page uses: CONNECT with a clean session and a 15 s
keep-alive, SUBSCRIBE with QoS 1, UNSUBSCRIBE, PUBLISH received and acknowledged with PUBACK, and
PINGREQ.
The packets travel in WebSocket frames with the subprotocol `mqtt`, as mqtt.js sends them from
the browser, or over plain TCP.
The WebSocket side is the sans-I/O `ClientProtocol` of the `websockets` package; the MQTT side
is encoded here because only these few packets are needed.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

# Keep-alive of the live page's mqtt.js client, in seconds.
KEEPALIVE_SECONDS = 15

CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP = 0x20, 0x30, 0x40, 0x90, 0xB0, 0xD0
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
SEQUENCE_FIELD = b'"sequence":'


class ScreenError(Exception):
    """The broker rejected a screen, or its handshake broke off; the message names the step."""


@dataclass(frozen=True)
class ScreenSettings:
    host: str
    port: int
    username: str
    password: str
    # Topics in the order the page subscribes; messages on `topics[live_index]` carry the timed steps.
    topics: tuple[str, ...]
    live_index: int
    websocket: bool = True
    qos: int = 1  # the live page subscribes with QoS 1
    # The topic left after the first live step, as the page leaves the state topic; None keeps all.
    leave_index: int | None = None
    # Live step `sequence_offset + n` is step n of the measurement; step 0 opens the draw.
    sequence_offset: int = 0


def encode_length(length: int) -> bytes:
    """Encode an MQTT remaining length as its variable byte integer."""
    encoded = bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | 0x80 if length else digit)
        if not length:
            return bytes(encoded)


def encode_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    # Protocol name "MQTT", level 4 (3.1.1), flags: user name, password, clean session.
    body = encode_string("MQTT") + bytes([4, 0xC2]) + KEEPALIVE_SECONDS.to_bytes(2, "big")
    body += encode_string(client_id) + encode_string(username) + encode_string(password)
    return bytes([0x10]) + encode_length(len(body)) + body


def subscribe_packet(packet_id: int, topics: tuple[str, ...], qos: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"".join(encode_string(topic) + bytes([qos]) for topic in topics)
    return bytes([0x82]) + encode_length(len(body)) + body


def unsubscribe_packet(packet_id: int, topics: tuple[str, ...]) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"".join(encode_string(topic) for topic in topics)
    return bytes([0xA2]) + encode_length(len(body)) + body


def puback_packet(packet_id: bytes) -> bytes:
    return b"\x40\x02" + packet_id


def parse_sequence(payload: bytes) -> int | None:
    """Read the `sequence` field of a live step without decoding the whole JSON document."""
    start = payload.find(SEQUENCE_FIELD)
    if start < 0:
        return None
    start += len(SEQUENCE_FIELD)
    end = start
    while end < len(payload) and payload[end] in b" 0123456789":
        end += 1
    digits = payload[start:end].strip()
    return int(digits) if digits else None


class Screen(asyncio.Protocol):
    """One live screen: connects, subscribes, then records when each live step arrives.

    `ready` resolves once the broker confirmed every subscription. `counts[i]` is the number of
    messages received on `topics[i]` since then, except retained ones replayed on subscription.
    `live_times` maps a live step's measured number (its sequence minus `sequence_offset`) to the
    CLOCK_MONOTONIC time (`time.monotonic()`, shared by every process on Linux) at which the
    bytes carrying it arrived. `left` turns true when the broker confirmed the UNSUBSCRIBE of
    `topics[leave_index]`. `on_message` runs after each batch of received messages.
    """

    def __init__(self, settings: ScreenSettings, client_id: str, on_message: Callable[["Screen"], None]) -> None:
        self.settings = settings
        self.client_id = client_id
        self.on_message = on_message
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.counts = [0] * len(settings.topics)
        self.live_times: dict[int, float] = {}
        self.completed = 0  # the owner's count of steps this screen has in full
        self.left = False
        self.opened_with = -1  # the owner's record of sum(counts) once the draw opened, -1 before
        self.last_sent = 0.0
        self.closed = False
        self._topic_index = {topic.encode(): index for index, topic in enumerate(settings.topics)}
        self._transport: asyncio.Transport | None = None
        self._websocket: ClientProtocol | None = None
        self._buffer = bytearray()

    @property
    def opened(self) -> bool:
        """Whether this screen has the draw's opening step and, if it leaves a topic, left it."""
        return 0 in self.live_times and (self.settings.leave_index is None or self.left)

    # asyncio.Protocol callbacks.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport but have the same methods.
        self._transport = transport  # type: ignore[assignment]
        if not self.settings.websocket:
            self._send_mqtt(connect_packet(self.client_id, self.settings.username, self.settings.password))
            return

        uri = parse_uri(f"ws://{self.settings.host}:{self.settings.port}/")
        self._websocket = ClientProtocol(uri, subprotocols=[Subprotocol("mqtt")])
        self._websocket.send_request(self._websocket.connect())
        self._flush_websocket()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self._websocket is None:
            self._feed(data, now)
        else:
            self._websocket.receive_data(data)
            for event in self._websocket.events_received():
                if isinstance(event, Response):
                    self._check_handshake(event)
                elif isinstance(event, Frame) and event.opcode in (Opcode.BINARY, Opcode.CONT):
                    self._feed(event.data, now)
            self._flush_websocket()
        self.on_message(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ScreenError(f"connection closed before SUBACK: {exc or 'end of stream'}"))
        self.on_message(self)

    # Commands of the owning worker.

    def ping(self) -> None:
        self._send_mqtt(PINGREQ_PACKET)

    def disconnect(self) -> None:
        if self._transport is None or self.closed:
            return
        self._send_mqtt(DISCONNECT_PACKET)
        self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # Internals.

    def _check_handshake(self, response: Response) -> None:
        assert self._websocket is not None
        if self._websocket.handshake_exc is not None or self._websocket.subprotocol != "mqtt":
            self._fail(f"WebSocket handshake failed: status={response.status_code} error={self._websocket.handshake_exc}")
            return
        self._send_mqtt(connect_packet(self.client_id, self.settings.username, self.settings.password))

    def _send_mqtt(self, packet: bytes) -> None:
        assert self._transport is not None
        self.last_sent = time.monotonic()
        if self._websocket is None:
            self._transport.write(packet)
            return
        self._websocket.send_binary(packet)
        self._flush_websocket()

    def _flush_websocket(self) -> None:
        assert self._transport is not None and self._websocket is not None
        for chunk in self._websocket.data_to_send():
            # An empty chunk is the sans-I/O signal to half-close the connection.
            if chunk:
                self._transport.write(chunk)
            elif self._transport.can_write_eof():
                self._transport.write_eof()

    def _feed(self, data: bytes, now: float) -> None:
        """Append stream bytes and handle every complete MQTT packet in the buffer."""
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            length, multiplier, position = 0, 1, 1
            while True:
                if position >= len(buffer):
                    return
                digit = buffer[position]
                length += (digit & 0x7F) * multiplier
                multiplier *= 128
                position += 1
                if not digit & 0x80:
                    break
            end = position + length
            if len(buffer) < end:
                return
            self._handle(buffer[0], bytes(buffer[position:end]), now)
            del buffer[:end]

    def _handle(self, header: int, body: bytes, now: float) -> None:
        kind = header & 0xF0
        if kind == PUBLISH:
            self._handle_publish(header, body, now)
        elif kind == CONNACK:
            if body[1] != 0:
                self._fail(f"CONNACK return code {body[1]}")
                return
            self._send_mqtt(subscribe_packet(1, self.settings.topics, self.settings.qos))
        elif kind == SUBACK:
            if any(code == 0x80 for code in body[2:]):
                self._fail(f"SUBACK rejected a topic: return codes {list(body[2:])}")
                return
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == UNSUBACK:
            self.left = True
        elif kind != PINGRESP and kind != PUBACK:
            self._fail(f"unexpected MQTT packet type {kind >> 4}")

    def _handle_publish(self, header: int, body: bytes, now: float) -> None:
        topic_length = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + topic_length]
        position = 2 + topic_length
        qos = (header >> 1) & 0x03
        if qos:
            self._send_mqtt(puback_packet(body[position : position + 2]))
            position += 2

        # A retained message replayed on subscription is state from before this screen joined.
        if header & 0x01:
            return
        index = self._topic_index.get(topic)
        if index is None:
            return
        self.counts[index] += 1
        if index == self.settings.live_index:
            sequence = parse_sequence(body[position:])
            if sequence is not None:
                self.live_times.setdefault(sequence - self.settings.sequence_offset, now)
            leave = self.settings.leave_index
            if leave is not None and self.counts[index] == 1:
                self._send_mqtt(unsubscribe_packet(2, (self.settings.topics[leave],)))

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ScreenError(f"screen {self.client_id}: {reason}"))
        self.abort()
