"""Mutual TLS against a real mosquitto with a test-made CA (issue 6, Security 1).

The broker's TLS listener demands a client certificate (``require_certificate``), takes the
certificate's CN as the MQTT user name (``use_identity_as_username``) and applies the ACL that
docs/operations.md recommends — read from the document, so the documented ACL is the tested one:
each dock writes only under its own dock id. Against it: the dock's link and publisher connect,
publish and read the console's acks; clients without a certificate, with one from another CA
or with an expired one are refused at connect; a dock publishing on another dock's topics gets
PUBACK 0x87, and that item stays in the outbox. The dock in turn refuses a broker it cannot
verify. Everything is real (broker, TLS, certificates); nothing of ours is mocked.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt import publish as mqtt_publish
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.publish.mqtt import MqttLink, RetainedMessage, TlsSettings, WillMessage
from agent.publish.outbox import Outbox
from agent.publish.publisher import Publisher
from agent.publish.tls_files import TlsFiles, check_tls_files
from agent.publish.topics import Topics
from tests.helpers import Mosquitto, MqttCollector
from tests.helpers.pki import CertAuthority
from tests.helpers.tls_broker import documented_acl, tls_listener_conf

UNIT = "unit-t"
HOST = "127.0.0.1"
DEADLINE_S = 20.0  # generous for loaded CI machines; a passing test never waits for it
POLL_S = 0.02


@dataclass(frozen=True)
class Identities:
    ca: CertAuthority
    other_ca: CertAuthority
    certs: dict[str, tuple[Path, Path]]  # name -> (certificate, key)

    def context(self, who: str | None, *, ca_file: Path | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=ca_file or self.ca.ca_file)
        if who is not None:
            cert, key = self.certs[who]
            context.load_cert_chain(cert, key)
        return context

    def settings(self, who: str, *, ca_file: Path | None = None) -> TlsSettings:
        cert, key = self.certs[who]
        return TlsSettings(ca_file or self.ca.ca_file, cert, key)


@dataclass(frozen=True)
class TlsBroker:
    broker: Mosquitto

    @property
    def port(self) -> int:
        return self.broker.port

    def url(self, host: str = HOST) -> str:
        return f"mqtts://{host}:{self.broker.port}"

    def wait_log(self, pattern: str) -> str:
        return eventually(lambda: re.search(pattern, self.broker.log_text()),
                          f"broker log line matching {pattern!r}", self.broker.diagnostics)[0]


def eventually(condition: Callable[[], Any], what: str,
               diagnostics: Callable[[], str] = lambda: "") -> Any:
    """Poll ``condition`` until truthy (returned); the poll interval only paces the polling."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}\n{diagnostics()}")
        threading.Event().wait(POLL_S)


class LogWatch(logging.Handler):
    """Keeps the agent's log records; ``wait_for`` blocks until one matches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._cond = threading.Condition()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def matching(self, fragment: str, level: int | None = None) -> list[logging.LogRecord]:
        with self._cond:
            return [r for r in self.records if fragment in r.getMessage()
                    and (level is None or r.levelno == level)]

    def wait_for(self, fragment: str) -> logging.LogRecord:
        with self._cond:
            if self._cond.wait_for(lambda: self.matching(fragment), DEADLINE_S):
                return self.matching(fragment)[0]
            seen = "\n  ".join(r.getMessage() for r in self.records)
        raise AssertionError(f"no log line with {fragment!r}; seen:\n  {seen}")


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    ca = CertAuthority(tmp_path / "pki")
    other = CertAuthority(tmp_path / "other-pki", "another CA")
    certs = {name: ca.issue(name) for name in ("dock-a", "dock-b", "console", "dock-e")}
    certs["broker"] = ca.issue("broker", san_ip=HOST)
    certs["dock-e-expired"] = ca.issue("dock-e-expired", expired=True)
    certs["dock-x"] = other.issue("dock-x")  # a dock id, but signed by a CA the broker ignores
    return Identities(ca, other, certs)


@pytest.fixture
def tls_broker(identities: Identities,
               mosquitto_factory: Callable[..., Mosquitto]) -> TlsBroker:
    conf = tls_listener_conf(identities.ca.ca_file, *identities.certs["broker"])
    return TlsBroker(mosquitto_factory(acl=documented_acl(), extra_conf=conf))


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("agent")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(watch)
    yield watch
    logger.removeHandler(watch)
    logger.setLevel(old_level)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Dock:
    topics: Topics
    outbox: Outbox
    publisher: Publisher
    link: MqttLink


@pytest.fixture
def make_dock(tmp_path: Path, tls_broker: TlsBroker, identities: Identities
              ) -> Iterator[Callable[..., Dock]]:
    """The agent's publishing path as the daemon wires it: outbox → publisher → MqttLink."""
    made: list[tuple[Dock, threading.Event, threading.Thread]] = []

    def make(cert: str, dock_id: str, *, delivery: str = "console-ack",
             clock: Callable[[], float] = time.monotonic) -> Dock:
        topics = Topics(f"bwc/{UNIT}/{dock_id}")
        outbox = Outbox(tmp_path / f"outbox-{len(made)}")
        publisher = Publisher(outbox, delivery=delivery, rate_per_s=1000, clock=clock)
        online = json.dumps({"type": "state", "schema": 1, "dock_id": dock_id,
                             "state": "online"}).encode()
        offline = online.replace(b'"online"', b'"offline"')
        link = MqttLink(tls_broker.url(), f"bwc-dock-{dock_id}",
                        will=WillMessage(topics.state, offline),
                        birth=[RetainedMessage(topics.state, online)],
                        tls=identities.settings(cert),
                        subscriptions=[topics.acks, topics.commands],
                        on_message=publisher.on_message,
                        on_publish_result=publisher.on_publish_result)
        publisher.attach(link)
        stop = threading.Event()
        thread = threading.Thread(target=publisher.run, args=(stop,), name="publisher")
        dock = Dock(topics, outbox, publisher, link)
        made.append((dock, stop, thread))
        thread.start()
        link.start()
        return dock

    yield make
    for dock, stop, thread in made:
        stop.set()
        thread.join(10)
        dock.link.stop()
        dock.outbox.close()


def event(item_id: str, dock_id: str) -> dict[str, Any]:
    return {"type": "event", "schema": 1, "id": item_id, "dock_id": dock_id, "event": "test",
            "at": "2024-05-01T11:01:02.042Z", "camera_uid": None, "details": {}}


def payload_id(message: Any) -> Any:
    try:
        return json.loads(message.payload).get("id")
    except ValueError:
        return None


# --------------------------------------------------------------------------- (a) connects

def test_dock_publishes_over_mutual_tls_and_reads_the_consoles_acks(
    tls_broker: TlsBroker, identities: Identities, make_dock: Callable[..., Dock],
    logs: LogWatch,
) -> None:
    cert, key = identities.certs["dock-a"]
    # The files pass the start-up check the daemon makes (key 0600, certificate of that key).
    check_tls_files(TlsFiles(identities.ca.ca_file, cert, key))
    console_tls = identities.context("console")
    with MqttCollector(HOST, tls_broker.port, "bwc/#", tls=console_tls) as console:
        dock = make_dock("dock-a", "dock-a")
        assert dock.link.wait_connected(DEADLINE_S), tls_broker.broker.diagnostics()
        assert dock.link.protocol == "5"
        tls_broker.wait_log(r"New client connected .* as bwc-dock-dock-a .*u'dock-a'")
        console.wait_for(lambda m: m.topic == dock.topics.state)  # the birth

        dock.outbox.put("event", dock.topics.events, event("ev-1", "dock-a"), "ev-1")
        dock.publisher.poke()
        got = console.wait_for(lambda m: payload_id(m) == "ev-1", timeout=DEADLINE_S)
        assert got.topic == dock.topics.events
        assert dock.outbox.is_pending("ev-1")  # console-ack: the PUBACK alone is not delivery

        # The console acknowledges over its own certificate; the dock may read its acks.
        ack = json.dumps({"type": "ack", "schema": 1, "ids": ["ev-1"]})
        cert_c, key_c = identities.certs["console"]
        mqtt_publish.single(
            dock.topics.acks, ack, qos=1, hostname=HOST, port=tls_broker.port,
            client_id="console-acks", protocol=MQTTProtocolVersion.MQTTv5,
            tls={"ca_certs": str(identities.ca.ca_file), "certfile": str(cert_c),
                 "keyfile": str(key_c)})
        eventually(lambda: dock.outbox.depth == 0, "the ack to empty the outbox")
    assert dock.publisher.refused == 0
    assert not logs.matching("refused"), [r.getMessage() for r in logs.matching("refused")]


# ------------------------------------------------------------------- (b, c, d) refused

def probe(tls_broker: TlsBroker, context: ssl.SSLContext) -> str:
    """Connect a plain paho client; "connected", or how the attempt ended."""
    outcome: list[str] = []
    done = threading.Event()

    def settle(what: str) -> None:
        if not outcome:
            outcome.append(what)
        done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="probe",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.tls_set_context(context)
    client.on_connect = lambda _c, _u, _f, code, _p: settle(
        "connected" if not code.is_failure else f"CONNACK {code}")
    client.on_disconnect = lambda _c, _u, _f, code, _p: settle(f"closed ({code})")
    client.on_connect_fail = lambda _c, _u: settle("connect failed")
    client.connect_async(HOST, tls_broker.port)
    client.loop_start()
    try:
        assert done.wait(DEADLINE_S), "no outcome for the connection attempt"
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0]


@pytest.mark.parametrize(("who", "broker_says"), [
    (None, "peer did not return a certificate"),
    ("dock-x", "certificate verify failed"),  # signed by another CA
    ("dock-e-expired", "certificate verify failed"),
], ids=["no certificate", "another CA", "expired"])
def test_client_without_a_valid_certificate_is_refused_at_connect(
    tls_broker: TlsBroker, identities: Identities, who: str | None, broker_says: str,
) -> None:
    outcome = probe(tls_broker, identities.context(who))
    assert outcome in ("closed (Unspecified error)", "connect failed"), outcome
    tls_broker.wait_log(broker_says)  # mosquitto logs OpenSSL's reason
    assert "New client connected" not in tls_broker.broker.log_text()
    # The control: the same CA's valid certificate for the same kind of client does connect,
    # so what was refused above is the certificate, not the client.
    assert probe(tls_broker, identities.context("dock-e")) == "connected"


def test_dock_with_an_expired_certificate_says_why_it_cannot_connect(
    tls_broker: TlsBroker, identities: Identities, logs: LogWatch,
) -> None:
    link = MqttLink(tls_broker.url(), "bwc-dock-dock-e", will=None,
                    tls=identities.settings("dock-e-expired"))
    link.start()
    try:
        # TLS 1.3: the handshake completes before the broker checks our certificate, then the
        # broker closes the connection with an alert; paho logs the alert, the link the loss.
        record = logs.wait_for("closed before the broker accepted the connection")
        assert record.levelno == logging.WARNING
        alert = logs.wait_for("failed to receive on socket")
        assert "CERTIFICATE_EXPIRED" in alert.getMessage().upper(), alert.getMessage()
        assert not link.connected
    finally:
        link.stop()


# ------------------------------------------------------------- (e) another dock's topics

def test_publishing_on_another_docks_topics_is_refused_and_never_counted_delivered(
    tls_broker: TlsBroker, identities: Identities, make_dock: Callable[..., Dock],
    logs: LogWatch,
) -> None:
    clock = ManualClock()
    console_tls = identities.context("console")
    with MqttCollector(HOST, tls_broker.port, "bwc/#", tls=console_tls) as console:
        # delivery = "puback", the case where a PUBACK could be mistaken for delivery.
        dock = make_dock("dock-a", "dock-a", delivery="puback", clock=clock)
        assert dock.link.wait_connected(DEADLINE_S), tls_broker.broker.diagnostics()
        forged_topic = f"bwc/{UNIT}/dock-b/events"
        dock.outbox.put("event", forged_topic, event("forged-1", "dock-b"), "forged-1")
        dock.outbox.put("event", dock.topics.events, event("own-1", "dock-a"), "own-1")
        dock.publisher.poke()

        # The broker answers the forged publish with PUBACK 0x87 "Not authorized"...
        tls_broker.wait_log(r"Denied PUBLISH from bwc-dock-dock-a .*'bwc/unit-t/dock-b/events'")
        tls_broker.wait_log(r"Sending PUBACK to bwc-dock-dock-a \(m\d+, rc135\)")
        logs.wait_for("outbox item forged-1 refused by the broker on bwc/unit-t/dock-b/events: "
                      "Not authorized; kept in the outbox")
        # ...and the dock's own topic, published after it on the same connection, goes through.
        console.wait_for(lambda m: payload_id(m) == "own-1", timeout=DEADLINE_S)
        eventually(lambda: not dock.outbox.is_pending("own-1"), "own-1 to count as delivered")
        # Published in order on one connection: had the broker delivered the forged event, the
        # console would have received it before own-1.
        assert "forged-1" not in [payload_id(m) for m in console.messages]
    assert dock.outbox.is_pending("forged-1") and dock.outbox.depth == 1
    assert dock.publisher.refused == 1
    refusal = logs.matching("broker refused publish to bwc/unit-t/dock-b/events: "
                            "Not authorized (0x87)")
    assert [r.levelno for r in refusal] == [logging.WARNING]

    # Tried again after resend_after_s (30 s on the publisher's clock), refused again, and
    # still not delivered; the repeat is logged at DEBUG, not as another WARNING.
    clock.now += 31
    dock.publisher.poke()
    eventually(lambda: dock.publisher.refused == 2, "the second attempt to be refused")
    assert dock.outbox.is_pending("forged-1")
    refusal = logs.matching("broker refused publish to bwc/unit-t/dock-b/events")
    assert [r.levelno for r in refusal] == [logging.WARNING, logging.DEBUG]
    assert len(re.findall(r"Denied PUBLISH from bwc-dock-dock-a",
                          tls_broker.broker.log_text())) == 2


# ------------------------------------------------------------ the dock verifies the broker

@pytest.mark.parametrize(("host", "why"), [
    (HOST, "broker certificate not accepted: "),  # OpenSSL's wording varies with the chain
    ("localhost", "broker certificate not accepted: Hostname mismatch"),
], ids=["CA that did not sign the broker", "host name not in the broker's certificate"])
def test_dock_refuses_a_broker_it_cannot_verify(
    tls_broker: TlsBroker, identities: Identities, logs: LogWatch, host: str, why: str,
) -> None:
    ca_file = identities.other_ca.ca_file if host == HOST else identities.ca.ca_file
    link = MqttLink(tls_broker.url(host), "bwc-dock-dock-a", will=None,
                    tls=identities.settings("dock-a", ca_file=ca_file))
    link.start()
    try:
        record = logs.wait_for(f"TLS with broker {host}:{tls_broker.port} failed: {why}")
        assert record.levelno == logging.WARNING
        assert not link.connected
    finally:
        link.stop()
    assert "New client connected" not in tls_broker.broker.log_text()
