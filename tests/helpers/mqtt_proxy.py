"""A TCP proxy in front of a real broker, for faults a plain mosquitto cannot produce.

* ``refuse_mqtt5=True`` makes the pair behave like a broker that only speaks MQTT 3.1.1
  (mosquitto 2.0 has no per-listener protocol-version switch): a CONNECT with protocol level 5
  is answered the way such a broker answers it — a 3.1.1 CONNACK with return code 1
  "unacceptable protocol version" — and the connection is closed. Other levels pass through.
* ``blackhole_current()`` silently drops everything clients send on the connections open now,
  so a publish stays unacknowledged; ``drop_connections()`` then severs them.
* ``rewrite=f`` edits what clients publish: every PUBLISH a client sends passes through
  ``f(topic, payload) -> payload`` (a man in the middle between a dock and the broker).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["MqttProxy"]

_CONNACK_UNACCEPTABLE_PROTOCOL_VERSION = bytes([0x20, 0x02, 0x00, 0x01])
_MAX_CONNECT_BYTES = 64 * 1024


class MqttProxy:
    host = "127.0.0.1"

    def __init__(self, upstream_host: str, upstream_port: int, *, refuse_mqtt5: bool = False,
                 rewrite: Callable[[str, bytes], bytes] | None = None):
        self._upstream = (upstream_host, upstream_port)
        self._refuse_mqtt5 = refuse_mqtt5
        self._rewrite = rewrite
        self._cond = threading.Condition()
        self._levels: list[int] = []
        self._conns: list[_Conn] = []
        self._closed = False
        self._listener = socket.create_server((self.host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="mqtt-proxy", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def protocol_levels(self) -> list[int]:
        """Protocol level of every CONNECT seen, in order (5 = MQTT 5, 4 = MQTT 3.1.1)."""
        with self._cond:
            return list(self._levels)

    def wait_for_connects(self, count: int, timeout: float) -> list[int]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._levels) >= count, timeout):
                raise AssertionError(f"expected {count} CONNECTs, saw {self._levels}")
            return list(self._levels)

    def blackhole_current(self) -> None:
        with self._cond:
            for conn in self._conns:
                conn.blackhole.set()

    def drop_connections(self) -> None:
        with self._cond:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
        # shutdown() wakes the accept() blocked in the acceptor thread (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(5)
        self.drop_connections()

    def __enter__(self) -> MqttProxy:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _v: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            connect = _read_packet(client)
            level = _protocol_level(connect)
        except (OSError, ValueError):
            client.close()
            return
        with self._cond:
            self._levels.append(level)
            self._cond.notify_all()
        if self._refuse_mqtt5 and level == 5:
            with contextlib.suppress(OSError):
                client.sendall(_CONNACK_UNACCEPTABLE_PROTOCOL_VERSION)
            client.close()
            return
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
            upstream.settimeout(None)
            upstream.sendall(connect)
        except OSError:
            client.close()
            return
        conn = _Conn(client, upstream)
        if self._rewrite is not None:
            conn.rewriter = _PublishRewriter(self._rewrite, mqtt5=level == 5)
        with self._cond:
            if self._closed:
                conn.close()
                return
            self._conns.append(conn)
        conn.start()


class _Conn:
    """One proxied connection: a pump thread per direction."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.blackhole = threading.Event()
        self.rewriter: _PublishRewriter | None = None

    def start(self) -> None:
        for src, dst, from_client in ((self.client, self.upstream, True),
                                      (self.upstream, self.client, False)):
            threading.Thread(target=self._pump, args=(src, dst, from_client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and self.rewriter is not None:
                    data = self.rewriter.feed(data)
                if data and not (from_client and self.blackhole.is_set()):
                    dst.sendall(data)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class _PublishRewriter:
    """Re-frames a client's byte stream into MQTT packets and rewrites PUBLISH payloads."""

    def __init__(self, rewrite: Callable[[str, bytes], bytes], *, mqtt5: bool) -> None:
        self._rewrite = rewrite
        self._mqtt5 = mqtt5
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        """Complete packets from the stream so far (rewritten); a partial one waits."""
        self._buffer += data
        out = []
        while (packet := self._take()) is not None:
            out.append(self._publish(packet) if packet[0] >> 4 == 3 else packet)
        return b"".join(out)

    def _take(self) -> bytes | None:
        buf = self._buffer
        length, shift, index = 0, 0, 1
        while True:
            if index >= len(buf):
                return None
            byte = buf[index]
            length |= (byte & 0x7F) << shift
            shift += 7
            index += 1
            if not byte & 0x80:
                break
        if len(buf) < index + length:
            return None
        self._buffer = buf[index + length:]
        return buf[:index + length]

    def _publish(self, packet: bytes) -> bytes:
        index = 1
        while packet[index] & 0x80:
            index += 1
        body = packet[index + 1:]
        topic_len = int.from_bytes(body[:2], "big")
        pos = 2 + topic_len + (2 if (packet[0] >> 1) & 3 else 0)
        if self._mqtt5:
            props, shift, i = 0, 0, pos
            while True:
                byte = body[i]
                props |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    break
            pos = i + props
        header, payload = body[:pos], body[pos:]
        new = self._rewrite(body[2:2 + topic_len].decode(), payload)
        return bytes([packet[0]]) + _varint(len(header) + len(new)) + header + new


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("peer closed during CONNECT")
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> bytes:
    header = _recv_exact(sock, 1)
    if header[0] >> 4 != 1:
        raise ValueError("first packet is not CONNECT")
    length_bytes, length, shift = b"", 0, 0
    while True:
        byte = _recv_exact(sock, 1)
        length_bytes += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
        if len(length_bytes) == 4:
            raise ValueError("malformed remaining length")
    if length > _MAX_CONNECT_BYTES:
        raise ValueError("CONNECT too large")
    return header + length_bytes + _recv_exact(sock, length)


def _protocol_level(packet: bytes) -> int:
    # Skip fixed header (1 byte + 1-4 length bytes), then "MQTT" as a 2-byte-length string.
    index = 1
    while packet[index] & 0x80:
        index += 1
    index += 1
    name_len = int.from_bytes(packet[index : index + 2], "big")
    return packet[index + 2 + name_len]
