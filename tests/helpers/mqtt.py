"""An independent MQTT observer: a plain paho client that records what a topic filter sees."""

from __future__ import annotations

import itertools
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

__all__ = ["Message", "MqttCollector"]

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class MqttCollector:
    """Subscribes to ``topic_filter`` (again after every reconnect) and keeps every message.

    Use as a context manager; entering waits until the subscription is acknowledged, so
    anything published afterwards — and every retained message — is seen.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str = "#",
        *,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.topic_filter = topic_filter
        self._host, self._port = host, port
        self._cond = threading.Condition()
        self._messages: list[Message] = []
        self._subscribed = False
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-collector-{next(_ids)}", protocol=protocol
        )
        if tls is not None:  # a TLS listener: ``tls`` verifies it and may carry a client cert
            self._client.tls_set_context(tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout: float = 5.0) -> MqttCollector:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._subscribed, timeout):
                raise AssertionError(
                    f"collector not subscribed to {self.topic_filter!r} on "
                    f"{self._host}:{self._port} within {timeout}s"
                )
        return self

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttCollector:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _v: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def messages(self) -> list[Message]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """The first message so far or to come that matches; AssertionError listing all seen."""
        found: list[Message] = []

        def match() -> bool:
            found[:] = [m for m in self._messages if predicate(m)][:1]
            return bool(found)

        with self._cond:
            if self._cond.wait_for(match, timeout):
                return found[0]
            count = len(self._messages)
            seen = "\n  ".join(
                f"{m.topic} retain={m.retain} {m.payload[:120]!r}" for m in self._messages
            )
        raise AssertionError(
            f"no matching message on {self.topic_filter!r} within {timeout}s; "
            f"seen {count}:\n  {seen or '(nothing)'}"
        )

    def _on_connect(self, client: paho.Client, _ud: Any, _f: Any, code: Any, _p: Any) -> None:
        if not code.is_failure:
            client.subscribe(self.topic_filter, qos=1)

    def _on_disconnect(self, _c: paho.Client, _ud: Any, _f: Any, _code: Any, _p: Any) -> None:
        with self._cond:
            self._subscribed = False

    def _on_subscribe(self, _c: paho.Client, _ud: Any, _mid: int, codes: Any, _p: Any) -> None:
        with self._cond:
            self._subscribed = not any(code.is_failure for code in codes)
            self._cond.notify_all()

    def _on_message(self, _c: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._cond.notify_all()
