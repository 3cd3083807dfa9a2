"""A minimal MQTT 3.1.1 client (QoS 0 only) on blocking sockets, for the GX mock.

It connects, subscribes and publishes. Its reader thread hands every received PUBLISH to
a callback, and a second thread sends PINGREQ so that the broker keeps the session.
"""

import socket
import struct
import threading
import time


def _encode_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


class MqttClient:
    def __init__(self, host: str, port: int, client_id: str, on_message, keepalive: int = 30):
        self.on_message = on_message
        self.keepalive = keepalive
        self.sock = socket.create_connection((host, port), timeout=10)
        self.lock = threading.Lock()
        self.packet_id = 0
        self.closed = threading.Event()
        variable = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive)
        self._send(0x10, variable + _string(client_id))
        packet_type, body = self._read_packet()
        if packet_type != 0x20 or body[1] != 0:
            raise ConnectionError(f"MQTT connection refused: CONNACK {body.hex()}")
        self.sock.settimeout(None)
        threading.Thread(target=self._reader, daemon=True).start()
        threading.Thread(target=self._pinger, daemon=True).start()

    def _send(self, first_byte: int, body: bytes) -> None:
        with self.lock:
            self.sock.sendall(bytes([first_byte]) + _encode_length(len(body)) + body)

    def _read_exact(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("MQTT connection closed by the broker")
            data += chunk
        return data

    def _read_packet(self) -> tuple[int, bytes]:
        first = self._read_exact(1)[0]
        multiplier, length = 1, 0
        while True:
            byte = self._read_exact(1)[0]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                break
        return first, self._read_exact(length)

    def _reader(self) -> None:
        try:
            while True:
                first, body = self._read_packet()
                if first >> 4 == 3:  # PUBLISH
                    (topic_length,) = struct.unpack("!H", body[:2])
                    topic = body[2:2 + topic_length].decode()
                    offset = 2 + topic_length + (2 if (first >> 1) & 0x03 else 0)
                    self.on_message(topic, body[offset:])
        except (ConnectionError, OSError):
            self.closed.set()

    def _pinger(self) -> None:
        while not self.closed.wait(self.keepalive / 2):
            try:
                self._send(0xC0, b"")
            except OSError:
                self.closed.set()

    def subscribe(self, topic: str) -> None:
        self.packet_id = self.packet_id % 65535 + 1
        self._send(0x82, struct.pack("!H", self.packet_id) + _string(topic) + b"\x00")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self._send(0x30 | (1 if retain else 0), _string(topic) + payload)

    def close(self) -> None:
        try:
            self._send(0xE0, b"")
            self.sock.close()
        except OSError:
            pass


def connect_with_retry(host: str, port: int, client_id: str, on_message,
                       timeout: float = 30) -> MqttClient:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return MqttClient(host, port, client_id, on_message)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
