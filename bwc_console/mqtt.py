"""The console's one MQTT edge: a paho client that subscribes on every connect and reports.

* ``start()`` returns once the first SUBACK arrived (every filter granted) or raises.
* ``sync()`` answers "has every retained message arrived?": it publishes a token to a private
  topic this client subscribed to in the same SUBSCRIBE, and waits for it to come back. A broker
  queues the retained messages of a subscription when it handles the SUBSCRIBE, and delivers a
  client's messages in order, so once the token is back the retained messages are in.
* ``publish()`` sends at QoS 1 and can wait for the PUBACK (reason code checked).
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

__all__ = ["Broker", "Link", "LinkError", "MessageHandler"]

log = logging.getLogger(__name__)

_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883}
#: (topic, payload, retain) from paho's network thread.
MessageHandler = Callable[[str, bytes, bool], None]


class LinkError(RuntimeError):
    """Bad broker URL, no connection or a refused subscription."""


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Broker:
        """``mqtt://host[:port]`` (1883) or ``mqtts://host[:port]`` (8883)."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in _PORTS or not parts.hostname:
            raise LinkError(f"broker URL {url!r}: expected mqtt://HOST[:PORT] or mqtts://…")
        try:
            port = parts.port or _PORTS[parts.scheme]
        except ValueError as exc:
            raise LinkError(f"broker URL {url!r}: {exc}") from None
        return cls(parts.hostname, port, parts.scheme == "mqtts")


class Link:
    def __init__(self, url: str, filters: Sequence[str], on_message: MessageHandler, *,
                 role: str, ca_file: str | None = None) -> None:
        self.broker = Broker.parse(url)
        self.client_id = f"bwc-console-{role}-{secrets.token_hex(6)}"
        self._sync_topic = f"bwc-console/sync/{self.client_id}"
        self._filters = [*filters, self._sync_topic]
        self._on_message = on_message
        self._cond = threading.Condition()
        self._subscribed = False
        self._refused: str | None = None
        self._tokens: set[bytes] = set()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.max_queued_messages_set(10_000)
        self._client.reconnect_delay_set(1, 5)
        if self.broker.tls:
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise LinkError(f"CA file {ca_file}: {exc}") from None
            self._client.tls_set_context(context)
        elif ca_file is not None:
            raise LinkError("--ca-file needs an mqtts:// broker URL")
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_subscribe = self._suback
        self._client.on_message = self._message

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float) -> Link:
        try:
            self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise LinkError(f"cannot connect to {self.broker.host}:{self.broker.port}: {exc}"
                            ) from None
        self._client.loop_start()
        with self._cond:
            ok = self._cond.wait_for(lambda: self._subscribed or self._refused, timeout)
            if self._refused:
                self.stop()
                raise LinkError(self._refused)
        if not ok:
            self.stop()
            raise LinkError(f"no connection to {self.broker.host}:{self.broker.port} "
                            f"within {timeout:g} s")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._subscribed

    # -- operations ----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, wait: float | None = None) -> bool:
        """QoS 1, not retained. With ``wait``: True once the broker acknowledged it."""
        info = self._client.publish(topic, payload, qos=1)
        if wait is None:
            return info.rc == paho.MQTT_ERR_SUCCESS
        try:
            info.wait_for_publish(wait)
        except (RuntimeError, ValueError) as exc:
            log.warning("publish to %s failed: %s", topic, exc)
            return False
        return info.is_published()

    def sync(self, timeout: float) -> bool:
        """True once every retained message of the subscriptions has been handed over."""
        token = secrets.token_hex(8).encode()
        with self._cond:
            self._tokens.add(token)
        self._client.publish(self._sync_topic, token, qos=1)
        with self._cond:
            return self._cond.wait_for(lambda: token not in self._tokens, timeout)

    # -- paho callbacks (paho's thread) --------------------------------------------------------

    def _connected(self, client: paho.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        if code.is_failure:
            with self._cond:
                self._refused = f"broker refused the connection: {code}"
                self._cond.notify_all()
            return
        log.info("connected to %s:%d", self.broker.host, self.broker.port)
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in self._filters])

    def _disconnected(self, _c: paho.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        with self._cond:
            was, self._subscribed = self._subscribed, False
        if was:
            log.warning("disconnected from the broker (%s); reconnecting", code)

    def _suback(self, _c: paho.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        refused = [f for f, c in zip(self._filters, codes, strict=False) if c.is_failure]
        with self._cond:
            if refused:
                self._refused = f"subscription refused for {refused}"
            else:
                self._subscribed = True
            self._cond.notify_all()

    def _message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self._sync_topic:
            with self._cond:
                self._tokens.discard(bytes(msg.payload))
                self._cond.notify_all()
            return
        try:
            self._on_message(msg.topic, bytes(msg.payload), bool(msg.retain))
        except Exception:  # a bug in a handler must not kill paho's thread
            log.exception("handling a message on %s failed", msg.topic)
