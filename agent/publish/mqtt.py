"""The agent's MQTT edge: one small class that owns the paho client and every paho callback.

Modelled on aiomqtt's wrapper of paho: callbacks never leak to callers, pending publishes are
tracked by message id, and the reconnection policy is explicit (paho's back-off, 1 s → 30 s).

A :class:`PublishHandle` resolves exactly once. ``ok=True``: the broker acknowledged it
(PUBACK/PUBCOMP; for QoS 0, the packet was written — QoS 0 has no acknowledgement).
``ok=False``: not delivered as far as we know — not connected, refused by the broker (MQTT 5
reason code ≥ 0x80), connection lost before the acknowledgement, or paho's local queue full.
The durable outbox re-sends those.

paho keeps unacknowledged QoS>0 messages in memory and retransmits them after a reconnect even
though we already reported them failed, so the broker may see a message twice: ordinary MQTT
at-least-once delivery; consumers de-duplicate by payload id.

MQTT 3.1.1 has no reason code on PUBACK: a broker that drops a publish for ACL reasons still
acknowledges it (mosquitto does), so refusals are only detectable under MQTT 5.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from .mqtt_settings import (
    BrokerAddress,
    MqttConfigError,
    MqttLinkError,
    RetainedMessage,
    TlsSettings,
    WillMessage,
    check_qos,
    check_topic,
)

__all__ = [
    "MAX_INFLIGHT_MESSAGES", "MAX_QUEUED_MESSAGES", "BrokerAddress", "MqttConfigError",
    "MqttLink", "MqttLinkError", "PublishHandle", "RetainedMessage", "TlsSettings", "WillMessage",
]

_log = logging.getLogger(__name__)


class _PahoNoiseFilter(logging.Filter):
    # paho 2.2 logs "Client is not connected" at ERROR whenever its loop turns once more
    # after a disconnect — every outage and every clean stop. Our on_disconnect already logs
    # the real event, so that line is demoted to DEBUG rather than paging anyone.
    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_paho_log = logging.getLogger(f"{__name__}.paho")  # paho logs sizes, never payloads
_paho_log.addFilter(_PahoNoiseFilter())

# paho's queue lives in memory only, and 0 (its default) means unbounded. Durability is the
# outbox's job, so this queue only holds the current connection's in-flight window plus some
# slack. The bound turns a broker that stops acknowledging (while TCP stays up) into
# back-pressure — handles fail with "local queue full" — instead of unbounded memory growth.
MAX_INFLIGHT_MESSAGES = 20
MAX_QUEUED_MESSAGES = 100

_RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84
_MAX_REFUSED_TOPICS = 1024  # topics whose refusal was logged at WARNING on this connection
_SUBSCRIPTION_QOS = 1


class PublishHandle:
    """Outcome of one publish; resolved once, by whichever thread learns it first."""

    __slots__ = ("_done", "_notify", "_ok", "_reason", "_refused", "mid", "qos", "topic")

    def __init__(self, topic: str, qos: int, *, notify: bool = True) -> None:
        self.topic, self.qos = topic, qos
        self.mid: int | None = None
        self._notify = notify  # False for births: the driver did not ask for them
        self._ok: bool | None = None
        self._reason = "pending"
        self._refused = False
        self._done = threading.Event()

    @property
    def ok(self) -> bool | None:
        """True delivered, False not delivered, None not known yet."""
        return self._ok

    @property
    def reason(self) -> str:
        """The broker's reason-code name ("Success", "Not authorized"…) or why we gave up."""
        return self._reason

    @property
    def refused(self) -> bool:
        """True when the broker itself answered with a failure reason code (MQTT 5, ≥ 0x80):
        it received the publish and said no. False when not known to be refused."""
        return self._refused

    def wait(self, timeout: float | None = None) -> bool:
        """True once the outcome is known (then read :attr:`ok`); False on timeout."""
        return self._done.wait(timeout)

    def _resolve(self, ok: bool, reason: str, *, refused: bool = False) -> bool:
        # First resolution wins: a late PUBACK must not flip a failure already reported.
        if self._done.is_set():
            return False
        self._ok, self._reason, self._refused = ok, reason, refused
        self._done.set()
        return True

    def __repr__(self) -> str:
        return f"PublishHandle({self.topic!r}, qos={self.qos}, ok={self._ok}, {self._reason!r})"


class MqttLink:
    """Link to the broker: births on every (re)connect, will on loss, tracked publishes."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        will: WillMessage | None,
        birth: Sequence[RetainedMessage] = (),
        tls: TlsSettings | None = None,
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes], None] | None = None,
        on_publish_result: Callable[[PublishHandle], None] | None = None,
        keepalive: int = 30,
    ) -> None:
        self._address = BrokerAddress.parse(url)
        if not client_id:
            raise MqttConfigError("client_id must not be empty")
        if self._address.tls != (tls is not None):
            raise MqttConfigError(f"{url!r}: mqtts:// needs TLS settings, mqtt:// must have none")
        if keepalive <= 0:
            raise MqttConfigError(f"keepalive must be positive, got {keepalive}")
        if any(not f or "\x00" in f for f in subscriptions):
            raise MqttConfigError(f"invalid subscription filter in {list(subscriptions)!r}")
        self._client_id = client_id
        self._will = will
        self._birth = tuple(birth)
        # Built now so a bad certificate or key fails at start-up, not at the first connect.
        self._ssl_context = tls.ssl_context() if tls is not None else None
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        self._on_publish_result = on_publish_result
        self._keepalive = keepalive

        self._cond = threading.Condition()
        self._lifecycle: Literal["new", "running", "stopped"] = "new"
        self._protocol = MQTTProtocolVersion.MQTTv5
        self._client: paho.Client | None = None
        self._retired: list[paho.Client] = []
        self._connected = False
        # Bumped on every connection loss: a message handed to paho in an older epoch can no
        # longer be acknowledged on the connection it was sent on.
        self._epoch = 0
        self._pending: dict[int, PublishHandle] = {}
        # on_publish may fire before publish() has registered its handle. We cannot hold our
        # lock across client.publish(): paho calls on_publish holding its own queue lock, and
        # publish() takes that lock — lock-order inversion, deadlock.
        self._early: dict[int, ReasonCode] = {}
        # Ids already reported failed that paho may still retransmit and get acknowledged;
        # their late results are dropped. Bounded by paho's queue (MAX_QUEUED_MESSAGES).
        self._abandoned: set[int] = set()
        self._subscription: tuple[int, int] | None = None  # (message id, epoch) of SUBSCRIBE
        self._unreachable_logged: str | None = None  # why the broker is unreachable, once logged
        self._refused_topics: set[str] = set()

    # ----------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def protocol(self) -> Literal["5", "3.1.1"]:
        """MQTT version in use: "5", or "3.1.1" for good once the broker refused MQTT 5."""
        with self._cond:
            return "5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"

    def start(self) -> None:
        """Start the network thread; connects in the background and retries with back-off."""
        with self._cond:
            if self._lifecycle != "new":
                raise MqttLinkError(f"cannot start a link that is {self._lifecycle}")
            self._lifecycle = "running"
            self._client = self._make_client(self._protocol)
            # Under the lock, so a concurrent stop() sees either no client or a running one.
            # Safe: connect_async() and loop_start() do no I/O and call no callback inline.
            self._launch(self._client)

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (so the broker does not send the will) and end the thread."""
        with self._cond:
            was, self._lifecycle = self._lifecycle, "stopped"
            client, retired = self._client, list(self._retired)
        if was != "running" or client is None:
            return
        client.disconnect()
        with self._cond:
            self._cond.wait_for(lambda: not self._connected, timeout)
        for each in (client, *retired):
            _join_loop(each)
        with self._cond:
            self._connected = False
            leftovers = list(self._pending.values())
            self._pending.clear()
            self._early.clear()
            self._abandoned.clear()
            self._cond.notify_all()
        for handle in leftovers:
            self._finish(handle, False, "link stopped")
        _log.info("mqtt %s: link stopped", self._client_id)

    def wait_connected(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout)

    def wait_disconnected(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._connected, timeout)

    # ----------------------------------------------------------------- publishing

    def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False
    ) -> PublishHandle:
        """Hand one message to paho; never blocks on the network.

        While disconnected it fails at once (``ok=False``, "not connected") rather than letting
        paho hold it in memory. Raises ValueError for a bad topic, QoS or payload type.
        """
        check_topic(topic, "publish")
        check_qos(qos)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise MqttConfigError(f"payload must be bytes, got {type(payload).__name__}")
        with self._cond:
            client = self._client if self._connected else None
            epoch = self._epoch
        if client is None:
            handle = PublishHandle(topic, qos)
            self._finish(handle, False, "not connected")
            return handle
        return self._send(client, epoch, topic, bytes(payload), qos, retain, notify=True)

    def _send(
        self, client: paho.Client, epoch: int, topic: str, payload: bytes, qos: int, retain: bool,
        *, notify: bool,
    ) -> PublishHandle:
        handle = PublishHandle(topic, qos, notify=notify)
        info = client.publish(topic, payload, qos=qos, retain=retain)
        handle.mid = info.mid
        early: ReasonCode | None = None
        failure: str | None = None
        with self._cond:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # NO_CONN leaves a QoS>0 message in paho's queue to retransmit; QUEUE_SIZE doesn't.
                if qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                    self._abandoned.add(info.mid)
                failure = _paho_error_text(info.rc)
            elif (early := self._early.pop(info.mid, None)) is not None:
                pass
            elif self._epoch != epoch:
                if qos > 0:
                    self._abandoned.add(info.mid)
                failure = "connection lost"
            else:
                self._pending[info.mid] = handle
        if early is not None:
            self._settle(handle, early)
        elif failure is not None:
            self._finish(handle, False, failure)
        return handle

    def _settle(self, handle: PublishHandle, code: ReasonCode) -> None:
        if code.is_failure:
            # An ACL refusal repeats on every re-send: a WARNING once per topic and connection,
            # DEBUG after that, so that a misconfigured ACL does not flood the journal.
            with self._cond:
                first = handle.topic not in self._refused_topics
                if first and len(self._refused_topics) < _MAX_REFUSED_TOPICS:
                    self._refused_topics.add(handle.topic)
            _log.log(logging.WARNING if first else logging.DEBUG,
                     "mqtt %s: broker refused publish to %s: %s (0x%02x)",
                     self._client_id, handle.topic, code, code.value)
        self._finish(handle, not code.is_failure, str(code), refused=code.is_failure)

    def _finish(self, handle: PublishHandle, ok: bool, reason: str, *,
                refused: bool = False) -> None:
        if not handle._resolve(ok, reason, refused=refused):
            return
        if not handle._notify:
            if not ok:
                _log.warning("mqtt %s: birth to %s failed: %s",
                             self._client_id, handle.topic, reason)
        elif self._on_publish_result is not None:
            try:
                self._on_publish_result(handle)
            except Exception:
                # Escaping into paho would kill its network thread.
                _log.exception("mqtt %s: on_publish_result callback failed", self._client_id)

    # ----------------------------------------------------------------- paho plumbing

    def _make_client(self, protocol: MQTTProtocolVersion) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=protocol
        )
        client.enable_logger(_paho_log)
        client.max_inflight_messages_set(MAX_INFLIGHT_MESSAGES)
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        client.reconnect_delay_set(1, 30)
        if self._will is not None:
            w = self._will
            client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        if self._ssl_context is not None:
            client.tls_set_context(self._ssl_context)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_paho_message
        return client

    def _launch(self, client: paho.Client) -> None:
        # A clean session every time: the outbox, not broker-side session state, makes
        # delivery durable, and subscriptions are re-made on every connect anyway.
        v5 = client.protocol == MQTTProtocolVersion.MQTTv5
        options: dict[str, Any] = {"clean_start": True} if v5 else {}
        client.connect_async(self._address.host, self._address.port, self._keepalive, **options)
        client.loop_start()

    def _on_connect(
        self, client: paho.Client, _ud: Any, _flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        with self._cond:
            if client is not self._client or self._lifecycle != "running":
                return
            epoch = self._epoch
        if code.is_failure:
            v5 = client.protocol == MQTTProtocolVersion.MQTTv5
            if v5 and code.value == _RC_UNSUPPORTED_PROTOCOL_VERSION:
                self._fall_back_to_311(client)
            else:
                _log.error("mqtt %s: broker refused the connection: %s", self._client_id, code)
            return
        self._unreachable_logged = None
        with self._cond:
            self._refused_topics.clear()
        # Births, then subscriptions, and only then "connected": anyone watching sees this
        # connection's retained birth before any other publish made on it.
        for birth in self._birth:
            self._send(client, epoch, birth.topic, birth.payload, birth.qos, True, notify=False)
        if self._subscriptions:
            # "connected" waits for the SUBACK (_on_subscribe, same paho thread, so it cannot
            # overtake us): from then on, messages published to our filters reach on_message.
            _rc, mid = client.subscribe([(f, _SUBSCRIPTION_QOS) for f in self._subscriptions])
            # No mid: the socket is already gone and on_disconnect follows; nothing to await.
            self._subscription = (mid, epoch) if mid is not None else None
        else:
            self._mark_connected(epoch)

    def _mark_connected(self, epoch: int) -> None:
        with self._cond:
            if self._epoch != epoch:  # lost again meanwhile
                return
            self._connected = True
            self._cond.notify_all()
        _log.info("mqtt %s: connected to %s:%d (MQTT %s)", self._client_id,
                  self._address.host, self._address.port, self.protocol)

    def _fall_back_to_311(self, old: paho.Client) -> None:
        # paho cannot change an existing client's protocol: the MQTT 5 client is retired
        # (disconnect() ends its loop once this callback returns) and a 3.1.1 client takes
        # over for the rest of the link's life.
        with self._cond:
            if self._lifecycle != "running":
                return
            self._protocol = MQTTProtocolVersion.MQTTv311
            self._client = self._make_client(self._protocol)
            self._retired.append(old)
            self._launch(self._client)  # under the lock: see start()
        _log.warning("mqtt %s: broker refused MQTT 5; falling back to MQTT 3.1.1", self._client_id)
        old.disconnect()

    def _on_connect_fail(self, client: paho.Client, _ud: Any) -> None:
        if client is not self._client:
            return
        # paho calls this from inside its `except OSError` around the connect, without the
        # exception; it is still the one being handled. The reason matters to an operator: a
        # TLS failure (wrong CA, expired or refused certificate) is not a network outage.
        exc = sys.exc_info()[1]
        why = _connect_error_text(exc)
        # Once per outage and reason: paho retries with back-off and would otherwise fill the
        # journal.
        level = logging.DEBUG if self._unreachable_logged == why else logging.WARNING
        self._unreachable_logged = why
        if isinstance(exc, ssl.SSLError):
            _log.log(level, "mqtt %s: TLS with broker %s:%d failed: %s; retrying with back-off",
                     self._client_id, self._address.host, self._address.port, why)
        else:
            _log.log(level, "mqtt %s: broker %s:%d unreachable; retrying with back-off (%s)",
                     self._client_id, self._address.host, self._address.port, why)

    def _on_disconnect(
        self, client: paho.Client, _ud: Any, flags: Any, code: ReasonCode, _props: Any
    ) -> None:
        with self._cond:
            if client is not self._client:
                return
            was_connected, stopping = self._connected, self._lifecycle != "running"
            self._connected = False
            self._epoch += 1
            lost = list(self._pending.values())
            self._pending.clear()
            self._abandoned.update(h.mid for h in lost if h.qos > 0 and h.mid is not None)
            self._cond.notify_all()
        if stopping:
            why = "link stopped"
        elif flags.is_disconnect_packet_from_server:
            why = f"broker sent DISCONNECT: {code}"
        elif code.value == 0x80:  # paho's catch-all for a socket error or EOF: no detail to add
            why = "connection lost"
        else:
            why = f"connection lost: {code}"  # e.g. keep-alive timeout
        if was_connected:
            _log.log(logging.INFO if stopping else logging.WARNING,
                     "mqtt %s: disconnected (%s)", self._client_id, why)
        elif not stopping:
            # Lost before CONNACK: under TLS 1.3 this is how a broker refusing our client
            # certificate looks (the handshake completes first; paho's own ERROR line just
            # before this one carries the TLS alert). Once per outage, like "unreachable".
            closed = f"closed before the broker accepted the connection: {why}"
            level = logging.DEBUG if self._unreachable_logged == closed else logging.WARNING
            self._unreachable_logged = closed
            _log.log(level, "mqtt %s: broker %s:%d %s; retrying with back-off", self._client_id,
                     self._address.host, self._address.port, closed)
        for handle in lost:
            self._finish(handle, False, why)

    def _on_publish(
        self, client: paho.Client, _ud: Any, mid: int, code: ReasonCode, _props: Any
    ) -> None:
        with self._cond:
            if client is not self._client:
                return
            if mid in self._abandoned:
                self._abandoned.discard(mid)
                return
            handle = self._pending.pop(mid, None)
            if handle is None:
                self._early[mid] = code
                return
        self._settle(handle, code)

    def _on_subscribe(
        self, client: paho.Client, _ud: Any, mid: int, codes: list[ReasonCode], _props: Any
    ) -> None:
        if client is not self._client or self._subscription is None:
            return
        sub_mid, epoch = self._subscription
        if mid != sub_mid:
            return
        for topic_filter, code in zip(self._subscriptions, codes, strict=False):
            if code.is_failure:
                _log.error("mqtt %s: subscription to %s refused: %s",
                           self._client_id, topic_filter, code)
        self._mark_connected(epoch)

    def _on_paho_message(self, client: paho.Client, _ud: Any, message: paho.MQTTMessage) -> None:
        if client is not self._client or self._on_message is None:
            return
        try:
            self._on_message(message.topic, bytes(message.payload))
        except Exception:
            # Escaping into paho would kill its network thread.
            _log.exception("mqtt %s: on_message handler failed for %s",
                           self._client_id, message.topic)


def _join_loop(client: paho.Client) -> None:
    # paho sets Client._thread to None when its loop ends; if that happens between
    # loop_stop's own None check and its join(), the thread is gone: nothing to join.
    with contextlib.suppress(AttributeError):
        client.loop_stop()


def _connect_error_text(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"broker certificate not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) if exc is not None else "connection failed"


def _paho_error_text(rc: MQTTErrorCode) -> str:
    if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
        return "not connected"
    if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
        return "local queue full"
    return paho.error_string(rc)
