"""MqttLink against a real mosquitto: births, will, acknowledgements, outages, fallback, ACLs."""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish
import pytest

from agent.publish.mqtt import (
    BrokerAddress,
    MqttConfigError,
    MqttLink,
    MqttLinkError,
    PublishHandle,
    RetainedMessage,
    TlsSettings,
    WillMessage,
)
from tests.helpers import Mosquitto, MqttCollector, MqttProxy, make_pki

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE = "bwc/allowed/dock/d1/state"
MANIFESTS = "bwc/allowed/dock/d1/manifest"
COMMANDS = "bwc/allowed/dock/d1/cmd/#"
ONLINE = b'{"type":"state","schema":1,"state":"online"}'
OFFLINE = b'{"type":"state","schema":1,"state":"offline"}'
# Every publish in these tests carries it, so the logs can be checked for payload leaks.
SECRET = b"PAYLOAD-MARKER-7f3a"

LinkFactory = Callable[..., MqttLink]


@pytest.fixture
def make_link() -> Iterator[LinkFactory]:
    links: list[MqttLink] = []

    def make(url: str, client_id: str = "dock-d1", **kwargs: Any) -> MqttLink:
        kwargs.setdefault("will", WillMessage(STATE, OFFLINE))
        kwargs.setdefault("birth", [RetainedMessage(STATE, ONLINE)])
        link = MqttLink(url, client_id, **kwargs)
        links.append(link)
        return link

    yield make
    for link in links:
        link.stop()


def started(link: MqttLink, timeout: float = 10.0) -> MqttLink:
    link.start()
    assert link.wait_connected(timeout), "link did not connect"
    return link


def payload_is(expected: bytes) -> Callable[[Any], bool]:
    return lambda message: message.payload == expected


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:2883", BrokerAddress("127.0.0.1", 2883, tls=False)),
        ("mqtts://broker.example:8884", BrokerAddress("broker.example", 8884, tls=True)),
        ("mqtt://broker.example", BrokerAddress("broker.example", 1883, tls=False)),
        ("mqtts://[::1]", BrokerAddress("::1", 8883, tls=True)),
    ],
)
def test_broker_url_parses(url: str, expected: BrokerAddress) -> None:
    assert BrokerAddress.parse(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://broker:80", "scheme"),
        ("broker:1883", "scheme"),
        ("mqtt://:1883", "missing host"),
        ("mqtt://broker:99999", "invalid port"),
        ("mqtt://broker:abc", "invalid port"),
        ("mqtt://broker:0", "port 0"),
        ("mqtt://user:pw@broker:1883", "credentials"),
        ("mqtt://broker:1883/topic", "path"),
    ],
)
def test_bad_broker_url_raises_value_error_naming_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MqttLink(url, "dock-d1", will=None)


def test_tls_settings_must_match_scheme(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = TlsSettings(pki.ca_file, pki.client_cert, pki.client_key, pki.key_password_file)
    with pytest.raises(MqttConfigError, match="mqtts"):
        MqttLink("mqtts://broker:8883", "dock-d1", will=None)
    with pytest.raises(MqttConfigError, match="mqtts"):
        MqttLink("mqtt://broker:1883", "dock-d1", will=None, tls=tls)
    MqttLink("mqtts://broker:8883", "dock-d1", will=None, tls=tls)  # consistent: accepted


def test_tls_context_verifies_broker_and_presents_client_chain(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    context = TlsSettings(
        pki.ca_file, pki.client_cert, pki.client_key, pki.key_password_file
    ).ssl_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1

    pki.key_password_file.write_text("wrong\n")
    wrong = TlsSettings(pki.ca_file, pki.client_cert, pki.client_key, pki.key_password_file)
    with pytest.raises(MqttConfigError, match="TLS settings unusable"):
        wrong.ssl_context()


def test_invalid_messages_and_topics_are_rejected() -> None:
    with pytest.raises(ValueError, match="birth topic"):
        RetainedMessage("bwc/+/state", ONLINE)
    with pytest.raises(ValueError, match="qos"):
        WillMessage(STATE, OFFLINE, qos=3)
    link = MqttLink("mqtt://127.0.0.1:9", "dock-d1", will=None)
    with pytest.raises(ValueError, match="publish topic"):
        link.publish("bwc/#", SECRET, qos=1)


def test_publish_before_start_fails_fast_and_start_is_once() -> None:
    link = MqttLink("mqtt://127.0.0.1:9", "dock-d1", will=None)
    handle = link.publish(MANIFESTS, SECRET, qos=1)
    assert handle.wait(0) and handle.ok is False and handle.reason == "not connected"
    link.stop()
    with pytest.raises(MqttLinkError):
        link.start()


# ------------------------------------------------------------------ against a broker


def test_birth_is_retained_and_visible_to_other_clients(
    mosquitto: Mosquitto, make_link: LinkFactory
) -> None:
    link = started(make_link(mosquitto.url))
    assert link.protocol == "5"
    with MqttCollector(mosquitto.host, mosquitto.port, STATE) as first:
        first.wait_for(payload_is(ONLINE))
    # Once the broker has it, any later subscriber gets it as a retained message.
    with MqttCollector(mosquitto.host, mosquitto.port, STATE) as late:
        assert late.wait_for(payload_is(ONLINE)).retain


def test_will_publishes_offline_when_the_process_dies(mosquitto: Mosquitto) -> None:
    script = (
        "import sys, threading\n"
        "from agent.publish.mqtt import MqttLink, RetainedMessage, WillMessage\n"
        "state, online, offline = sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()\n"
        "link = MqttLink(sys.argv[1], 'dock-doomed', will=WillMessage(state, offline),\n"
        "                birth=[RetainedMessage(state, online)])\n"
        "link.start()\n"
        "sys.exit(2) if not link.wait_connected(10) else None\n"
        "sys.stdout.write('connected\\n'); sys.stdout.flush()\n"
        "threading.Event().wait()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with MqttCollector(mosquitto.host, mosquitto.port, STATE) as watcher:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, mosquitto.url, STATE, ONLINE.decode(), OFFLINE.decode()],
            stdout=subprocess.PIPE, env=env,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"connected\n"  # EOF (b"") if the child failed
            watcher.wait_for(payload_is(ONLINE))
            proc.kill()  # SIGKILL: no DISCONNECT is ever sent
            proc.wait(10)
            will = watcher.wait_for(payload_is(OFFLINE))
        finally:
            proc.kill()
            proc.wait(10)
    assert will.topic == STATE


def test_clean_stop_does_not_trigger_the_will(
    mosquitto: Mosquitto, make_link: LinkFactory
) -> None:
    link = started(make_link(mosquitto.url))
    with MqttCollector(mosquitto.host, mosquitto.port, "bwc/#") as watcher:
        watcher.wait_for(payload_is(ONLINE))
        link.stop()
        assert not link.connected
        # Anything the broker did on our disconnect is ordered before this marker.
        paho.mqtt.publish.single("bwc/marker", b"after-stop", hostname=mosquitto.host,
                                 port=mosquitto.port)
        watcher.wait_for(payload_is(b"after-stop"))
    assert OFFLINE not in [m.payload for m in watcher.messages]


def test_qos1_and_qos0_publishes_resolve_ok(
    mosquitto: Mosquitto, make_link: LinkFactory
) -> None:
    results: list[PublishHandle] = []
    link = started(make_link(mosquitto.url, on_publish_result=results.append))
    with MqttCollector(mosquitto.host, mosquitto.port, MANIFESTS) as watcher:
        qos1 = link.publish(MANIFESTS, SECRET + b"-1", qos=1)
        qos0 = link.publish(MANIFESTS, SECRET + b"-0", qos=0)
        assert qos1.wait(5) and qos1.ok is True and qos1.reason == "Success"
        assert qos0.wait(5) and qos0.ok is True
        watcher.wait_for(payload_is(SECRET + b"-1"))
        watcher.wait_for(payload_is(SECRET + b"-0"))
    assert {id(h) for h in results} == {id(qos1), id(qos0)}  # births are not reported


def test_on_message_delivers_subscribed_topics(
    mosquitto: Mosquitto, make_link: LinkFactory
) -> None:
    received: list[tuple[str, bytes]] = []
    got = threading.Event()

    def on_message(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        got.set()

    started(make_link(mosquitto.url, subscriptions=[COMMANDS], on_message=on_message))
    paho.mqtt.publish.single("bwc/allowed/dock/d1/cmd/release", SECRET, qos=1,
                             hostname=mosquitto.host, port=mosquitto.port)
    assert got.wait(5)
    assert received == [("bwc/allowed/dock/d1/cmd/release", SECRET)]


def test_broker_outage_fails_fast_then_reconnects_births_and_resubscribes(
    mosquitto: Mosquitto, make_link: LinkFactory
) -> None:
    results: list[PublishHandle] = []
    commands: list[bytes] = []
    got_command = threading.Event()

    def on_message(_topic: str, payload: bytes) -> None:
        commands.append(payload)
        got_command.set()

    link = started(make_link(mosquitto.url, subscriptions=[COMMANDS], on_message=on_message,
                             on_publish_result=results.append))
    mosquitto.stop()
    assert link.wait_disconnected(5)

    handle = link.publish(MANIFESTS, SECRET, qos=1)
    # Resolved before publish() returned: nothing waits in paho's memory-only queue.
    assert handle.ok is False and handle.reason == "not connected"
    assert results == [handle]

    mosquitto.start()  # same port; persistence is off, so retained state starts empty
    assert link.wait_connected(15), "link did not reconnect by itself"
    with MqttCollector(mosquitto.host, mosquitto.port, STATE) as watcher:
        watcher.wait_for(payload_is(ONLINE))  # only the re-birth can have put it there
    paho.mqtt.publish.single("bwc/allowed/dock/d1/cmd/ping", SECRET, qos=1,
                             hostname=mosquitto.host, port=mosquitto.port)
    assert got_command.wait(5), "subscription was not renewed after reconnect"
    again = link.publish(MANIFESTS, SECRET, qos=1)
    assert again.wait(5) and again.ok is True


def test_connection_lost_before_puback_fails_the_handle(
    mosquitto: Mosquitto, make_link: LinkFactory
) -> None:
    with (
        MqttProxy(mosquitto.host, mosquitto.port) as proxy,
        MqttCollector(mosquitto.host, mosquitto.port, "bwc/#") as watcher,
    ):
        link = started(make_link(proxy.url))
        watcher.wait_for(payload_is(ONLINE))  # the birth is through before we cut the line
        proxy.blackhole_current()  # from now on nothing reaches the broker: no PUBACK
        handle = link.publish(MANIFESTS, SECRET, qos=1)
        assert not handle.wait(0.2)
        proxy.drop_connections()
        assert handle.wait(5)
        assert handle.ok is False and handle.reason == "connection lost"

        # paho retransmits the message after reconnecting (at-least-once); the broker's late
        # PUBACK must not flip the outcome already reported to the caller.
        assert link.wait_connected(15)
        watcher.wait_for(payload_is(SECRET))
        later = link.publish(MANIFESTS, SECRET + b"-later", qos=1)
        assert later.wait(5) and later.ok is True  # acknowledged after the retransmission
        assert handle.ok is False


def test_falls_back_to_mqtt311_and_remembers_it(
    mosquitto: Mosquitto, make_link: LinkFactory
) -> None:
    with MqttProxy(mosquitto.host, mosquitto.port, refuse_mqtt5=True) as proxy:
        link = started(make_link(proxy.url))
        assert link.protocol == "3.1.1"
        assert proxy.protocol_levels == [5, 4]
        with MqttCollector(mosquitto.host, mosquitto.port, STATE) as watcher:
            watcher.wait_for(payload_is(ONLINE))

        proxy.drop_connections()
        assert link.wait_disconnected(5)
        assert link.wait_connected(15)
        assert proxy.protocol_levels == [5, 4, 4]  # no second MQTT 5 attempt
        handle = link.publish(MANIFESTS, SECRET, qos=1)
        assert handle.wait(5) and handle.ok is True


ACL = "topic write bwc/allowed/#\ntopic read #\n"


def test_refused_publish_is_reported_not_delivered(
    mosquitto_factory: Callable[..., Mosquitto],
    make_link: LinkFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.publish.mqtt")
    broker = mosquitto_factory(acl=ACL)
    link = started(make_link(broker.url))
    assert link.protocol == "5"
    with MqttCollector(broker.host, broker.port, "bwc/#") as watcher:
        denied = link.publish("bwc/denied/manifest", SECRET + b"-denied", qos=1)
        allowed = link.publish(MANIFESTS, SECRET + b"-allowed", qos=1)
        # mosquitto 2.0 answers a denied QoS 1 publish under MQTT 5 with PUBACK 0x87.
        assert denied.wait(5) and denied.ok is False and denied.reason == "Not authorized"
        assert allowed.wait(5) and allowed.ok is True
        watcher.wait_for(payload_is(SECRET + b"-allowed"))
    assert SECRET + b"-denied" not in [m.payload for m in watcher.messages]
    assert "refused publish to bwc/denied/manifest: Not authorized (0x87)" in caplog.text
    assert "connected to" in caplog.text
    assert SECRET.decode() not in caplog.text  # topics are logged, payloads never


def test_mqtt311_cannot_see_acl_refusals(
    mosquitto_factory: Callable[..., Mosquitto], make_link: LinkFactory
) -> None:
    # Documents the limit stated in the module docstring: no reason codes on a 3.1.1 PUBACK.
    broker = mosquitto_factory(acl=ACL)
    with MqttProxy(broker.host, broker.port, refuse_mqtt5=True) as proxy:
        link = started(make_link(proxy.url))
        assert link.protocol == "3.1.1"
        denied = link.publish("bwc/denied/manifest", SECRET, qos=1)
        assert denied.wait(5) and denied.ok is True
