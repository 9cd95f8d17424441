"""What the MQTT link is configured with: broker address, birth and will messages, TLS.

Plain values, validated on construction, so that a bad URL, topic or certificate fails at
start-up with a message that names it, not at the first connect.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from .tls_files import read_key_password

__all__ = [
    "BrokerAddress", "MqttConfigError", "MqttLinkError", "RetainedMessage", "TlsSettings",
    "WillMessage", "check_qos", "check_topic",
]

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class MqttConfigError(ValueError):
    """A broker URL, message, topic or TLS setting is invalid; the message names the problem."""


class MqttLinkError(RuntimeError):
    """The link was used out of order (started twice, started after stop)."""


def check_topic(topic: str, what: str) -> None:
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise MqttConfigError(f"invalid {what} topic {topic!r}")


def check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise MqttConfigError(f"qos must be 0, 1 or 2, got {qos!r}")


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (default ports 1883/8883)."""
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS:
            raise MqttConfigError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
        if parts.username is not None or parts.password is not None:
            raise MqttConfigError(f"broker URL {url!r}: credentials do not belong in the URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise MqttConfigError(f"broker URL {url!r}: unexpected path, query or fragment")
        if not parts.hostname:
            raise MqttConfigError(f"broker URL {url!r}: missing host")
        try:
            port = parts.port
        except ValueError as exc:  # out of range, or not a number
            raise MqttConfigError(f"broker URL {url!r}: invalid port ({exc})") from None
        if port == 0:
            raise MqttConfigError(f"broker URL {url!r}: port 0 is not a valid port")
        return cls(parts.hostname, port or _DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts")


@dataclass(frozen=True, slots=True)
class RetainedMessage:
    """A birth message: published retained on every (re)connect, before anything else."""

    topic: str
    payload: bytes
    qos: int = 1

    def __post_init__(self) -> None:
        check_topic(self.topic, "birth")
        check_qos(self.qos)


@dataclass(frozen=True, slots=True)
class WillMessage:
    """What the broker publishes for us when the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True

    def __post_init__(self) -> None:
        check_topic(self.topic, "will")
        check_qos(self.qos)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS 1.2 or later: the broker is verified against ``ca_file`` (certificate chain and host
    name); with ``cert_file`` + ``key_file`` we present a client certificate too (mutual TLS,
    what a production broker should demand). The files themselves are checked, with messages
    naming the config key, by :func:`agent.publish.tls_files.check_tls_files` at start-up."""

    ca_file: str | os.PathLike[str]
    cert_file: str | os.PathLike[str] | None = None
    key_file: str | os.PathLike[str] | None = None
    key_password_file: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise MqttConfigError("cert_file and key_file go together")

    def ssl_context(self) -> ssl.SSLContext:
        # PROTOCOL_TLS_CLIENT already means CERT_REQUIRED and hostname checking.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cafile=os.fspath(self.ca_file))
            if self.cert_file is not None and self.key_file is not None:
                password = None
                if self.key_password_file is not None:
                    password = read_key_password(self.key_password_file)
                context.load_cert_chain(
                    os.fspath(self.cert_file), os.fspath(self.key_file), password=password
                )
        except (OSError, ssl.SSLError) as exc:
            raise MqttConfigError(f"TLS settings unusable: {exc}") from exc
        return context


