"""The agent's TOML configuration: one frozen dataclass tree, refused loudly when wrong.

Every key is documented in ``docs/configuration.md`` (a test keeps the two in step). Unknown keys,
wrong types and out-of-range values are refused with a :class:`ConfigError` naming the key: a dock
that silently ignores a misspelt ``erase_after`` could erase evidence it was told to keep.

Relative paths are resolved against the directory of the config file, never against the working
directory (which is ``/`` under systemd and something else in a shell).
"""

from __future__ import annotations

import difflib
import logging
import re
import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from firmware_protocol.messages import MAX_CHUNK_SIZE

from .publish.tls_files import TlsFileError, TlsFiles, check_tls_files

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "BrokerAddress",
    "ClockConfig",
    "ComplianceConfig",
    "Config",
    "ConfigError",
    "Delivery",
    "Enrollment",
    "EraseAfter",
    "ReadinessConfig",
    "TlsConfig",
    "UsbId",
    "config_keys",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/bwc-dock/agent.toml")

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_USB_ID = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})")
_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
               "error": logging.ERROR, "critical": logging.CRITICAL}
_USB_BACKENDS = ("libusb1", "libusb0", "openusb")  # the backends pyusb ships
_TOPIC_PLACEHOLDERS = ("dock_id", "unit")


class ConfigError(Exception):
    """A configuration problem; ``key`` is the dotted key at fault (None for file-level errors)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class Delivery(StrEnum):
    CONSOLE_ACK = "console-ack"
    PUBACK = "puback"


class EraseAfter(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    STORED = "stored"
    NEVER = "never"


class Enrollment(StrEnum):
    STRICT = "strict"
    TRUST_ON_FIRST_USE = "trust-on-first-use"


class UsbId(NamedTuple):
    vendor: int
    product: int

    def __str__(self) -> str:
        return f"{self.vendor:04x}:{self.product:04x}"


class BrokerAddress(NamedTuple):
    tls: bool
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class TlsConfig:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class ReadinessConfig:
    battery_min_pct: int = 90
    storage_min_hours: int = 8
    clock_tolerance_ms: int = 1000


@dataclass(frozen=True, slots=True)
class ClockConfig:
    require_ntp_sync: bool = True
    max_residual_ms: int = 20
    sync_attempts: int = 3


@dataclass(frozen=True, slots=True)
class ComplianceConfig:
    gap_threshold_s: int = 600
    overdue_after_s: int = 86_400
    retention_months: int = 120
    command_max_age_s: int = 300


@dataclass(frozen=True, slots=True)
class Config:
    dock_id: str
    unit: str
    state_dir: Path = Path("/var/lib/bwc-dock")
    serial_ports: tuple[str, ...] = ("/dev/serial/by-id/*bwc*",)
    broker: str = ""
    delivery: Delivery = Delivery.CONSOLE_ACK
    erase_after: EraseAfter = EraseAfter.ACKNOWLEDGED
    enrollment: Enrollment = Enrollment.STRICT
    topic_prefix: str = "bwc/{unit}/{dock_id}"
    health_interval_s: float = 60.0
    chunk_size_serial: int = 262144
    chunk_size_usb: int = 1048576
    storage_reserve_bytes: int = 1 << 30
    max_concurrent_offloads: int = 4
    session_timeout_s: float = 10.0
    status_interval_s: float = 5.0
    outbox_rate_per_s: float = 50.0
    log_level: str = "info"
    usb_backend: str = "libusb1"
    usb_ids: tuple[UsbId, ...] = (UsbId(0x1D6B, 0x0104),)
    console_public_keys: tuple[Path, ...] = ()
    tls: TlsConfig = field(default_factory=TlsConfig)
    readiness: ReadinessConfig = field(default_factory=ReadinessConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)

    @property
    def topic_prefix_resolved(self) -> str:
        return self.topic_prefix.format(unit=self.unit, dock_id=self.dock_id)

    @property
    def broker_address(self) -> BrokerAddress | None:
        """The parsed ``broker``; None when the dock runs offline (``broker = ""``)."""
        return _parse_broker(self.broker, "broker") if self.broker else None

    @property
    def log_level_number(self) -> int:
        return _LOG_LEVELS[self.log_level]

    def check_files(self) -> None:
        """Refuse missing or unreadable files named by the config, and unusable TLS files (see
        ``agent.publish.tls_files``). Done at daemon start, not at load, so that the documented
        example and ``dock-agent status`` work without them."""
        named: list[tuple[str, Path | None]] = [
            (f"tls.{f.name}", getattr(self.tls, f.name)) for f in fields(self.tls)
        ]
        named += [(f"console_public_keys[{i}]", p) for i, p in enumerate(self.console_public_keys)]
        for key, path in named:
            if path is None:
                continue
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                raise ConfigError(
                    f"config key {key!r}: cannot read {str(path)!r}: {exc.strerror}", key
                ) from None
        if self.tls.ca_file is not None:
            # Key and password file private (0600/0400), key decryptable, certificate its own.
            files = TlsFiles(self.tls.ca_file, self.tls.cert_file, self.tls.key_file,
                             self.tls.key_password_file)
            try:
                check_tls_files(files)
            except TlsFileError as exc:
                key = f"tls.{exc.field}"
                raise ConfigError(f"config key {key!r}: {exc}", key) from None


def config_keys() -> list[str]:
    """Every dotted key of the config tree, in declaration order (used by the docs test)."""

    def walk(cls: type, prefix: str) -> list[str]:
        out: list[str] = []
        for f in fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            if is_dataclass(default):
                out += walk(type(default), f"{prefix}{f.name}.")
            else:
                out.append(prefix + f.name)
        return out

    return walk(Config, "")


# --------------------------------------------------------------------------- parsing helpers

_MISSING: Any = object()
_T = TypeVar("_T")


class _Table:
    """One TOML table being consumed: every key must be taken, leftovers are unknown keys."""

    def __init__(self, data: dict[str, Any], prefix: str, base_dir: Path) -> None:
        self.data = dict(data)
        self.prefix = prefix
        self.base_dir = base_dir
        self.known: list[str] = []

    def key(self, name: str) -> str:
        return self.prefix + name

    def take(self, name: str) -> Any:
        self.known.append(name)
        return self.data.pop(name, _MISSING)

    def fail(self, name: str, why: str, value: Any = _MISSING) -> ConfigError:
        got = "" if value is _MISSING else f", got {_show(value)}"
        return ConfigError(f"config key {self.key(name)!r}: {why}{got}", self.key(name))

    def finish(self) -> None:
        for name in sorted(self.data):
            hint = difflib.get_close_matches(name, self.known, n=1)
            why = f"unknown key (did you mean {hint[0]!r}?)" if hint else (
                "unknown key (known keys: " + ", ".join(sorted(self.known)) + ")")
            raise ConfigError(f"config key {self.key(name)!r}: {why}", self.key(name))

    def sub(self, name: str) -> _Table:
        value = self.take(name)
        if value is _MISSING:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(name, "must be a table", value)
        return _Table(value, self.key(name) + ".", self.base_dir)

    def string(self, name: str, default: str = _MISSING, *, pattern: re.Pattern[str] | None = None,
               what: str = "a string") -> str:
        value = self.take(name)
        if value is _MISSING:
            if default is _MISSING:
                raise self.fail(name, f"is required ({what})")
            return default
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise self.fail(name, f"must be {what}", value)
        return value

    def choice(self, name: str, enum: Callable[[str], _T], options: tuple[str, ...],
               default: _T) -> _T:
        value = self.take(name)
        if value is _MISSING:
            return default
        if value not in options:
            raise self.fail(name, "must be one of " + ", ".join(f"'{o}'" for o in options), value)
        return enum(value)

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.take(name)
        if value is _MISSING:
            return default
        if type(value) is not int or not lo <= value <= hi:
            raise self.fail(name, f"must be an integer {lo}..{hi}", value)
        return value

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self.take(name)
        if value is _MISSING:
            return default
        if type(value) not in (int, float) or not lo <= value <= hi:
            raise self.fail(name, f"must be a number {lo:g}..{hi:g}", value)
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.take(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false", value)
        return value

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.take(name)
        if value is _MISSING:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, "must be a list of non-empty strings", value)
        return tuple(value)

    def path(self, name: str, default: Path | None) -> Path | None:
        value = self.take(name)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not value:
            raise self.fail(name, "must be a non-empty string (a file path)", value)
        return self.base_dir / value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_broker(value: str, key: str) -> BrokerAddress:
    bad = ConfigError(f"config key {key!r}: must be 'mqtt://host:port' or 'mqtts://host:port' "
                      f"(or \"\" for offline), got {value!r}", key)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise bad from None
    if (parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port is None or port == 0
            or parts.username is not None or parts.path or parts.query or parts.fragment):
        raise bad
    return BrokerAddress(parts.scheme == "mqtts", parts.hostname, port)


def _topic_prefix(t: _Table) -> str:
    name = "topic_prefix"
    value = t.string(name, "bwc/{unit}/{dock_id}")
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        raise t.fail(name, f"bad placeholder ({exc})", value) from None
    unknown = [n for n in names if n not in _TOPIC_PLACEHOLDERS]
    if unknown:
        raise t.fail(name, f"unknown placeholder {{{unknown[0]}}} (allowed: {{unit}}, {{dock_id}})",
                     value)
    levels = value.split("/")
    if any(c in value for c in "+#\0") or "" in levels:
        raise t.fail(name, "must be an MQTT topic without wildcards or empty levels", value)
    return value


def _usb_backend(t: _Table) -> str:
    value = t.take("usb_backend")
    if value is _MISSING:
        return "libusb1"
    if isinstance(value, str) and value.startswith("camsim:"):
        bus_dir = value.removeprefix("camsim:")
        if not bus_dir.startswith("/"):
            raise t.fail("usb_backend", "'camsim:' needs an absolute bus directory", value)
        return value
    if value not in _USB_BACKENDS:
        raise t.fail("usb_backend", "must be one of " + ", ".join(
            f"'{o}'" for o in _USB_BACKENDS) + " or 'camsim:/absolute/bus/dir'", value)
    return str(value)


def _usb_ids(t: _Table) -> tuple[UsbId, ...]:
    raw = t.strings("usb_ids", ("1d6b:0104",))
    ids = []
    for item in raw:
        m = _USB_ID.fullmatch(item)
        if m is None:
            raise t.fail("usb_ids", "must be a list of 'vvvv:pppp' hex strings", raw)
        ids.append(UsbId(int(m[1], 16), int(m[2], 16)))
    return tuple(ids)


def _tls(t: _Table, broker: BrokerAddress | None) -> TlsConfig:
    tls = TlsConfig(*(t.path(n, None) for n in ("ca_file", "cert_file", "key_file",
                                                  "key_password_file")))
    t.finish()
    uses_tls = broker is not None and broker.tls
    for f in fields(tls):
        if getattr(tls, f.name) is not None and not uses_tls:
            raise t.fail(f.name, "is set but 'broker' is not an mqtts:// URL")
    if uses_tls and tls.ca_file is None:
        raise t.fail("ca_file", "is required when 'broker' is an mqtts:// URL")
    if (tls.cert_file is None) != (tls.key_file is None):
        raise t.fail("key_file" if tls.key_file is None else "cert_file",
                     "cert_file and key_file must be given together")
    if tls.key_password_file is not None and tls.key_file is None:
        raise t.fail("key_password_file", "needs key_file")
    return tls


def _parse(t: _Table) -> Config:
    what = "a string of 1..64 characters from A-Z a-z 0-9 _ -"
    dock_id = t.string("dock_id", pattern=_NAME, what=what)
    unit = t.string("unit", pattern=_NAME, what=what)
    state_dir = t.path("state_dir", Path("/var/lib/bwc-dock"))
    assert state_dir is not None
    serial_ports = t.strings("serial_ports", ("/dev/serial/by-id/*bwc*",))
    for i, glob in enumerate(serial_ports):
        if not glob.startswith("/"):
            # A relative glob would be matched against the working directory: never intended.
            raise t.fail("serial_ports", f"entry {i} must be an absolute path glob", glob)
    broker_raw = t.string("broker", "")
    broker = _parse_broker(broker_raw, "broker") if broker_raw else None
    config = Config(
        dock_id=dock_id, unit=unit, state_dir=state_dir, serial_ports=serial_ports,
        broker=broker_raw,
        delivery=t.choice("delivery", Delivery, tuple(Delivery), Delivery.CONSOLE_ACK),
        erase_after=t.choice("erase_after", EraseAfter, tuple(EraseAfter),
                             EraseAfter.ACKNOWLEDGED),
        enrollment=t.choice("enrollment", Enrollment, tuple(Enrollment), Enrollment.STRICT),
        topic_prefix=_topic_prefix(t),
        health_interval_s=t.number("health_interval_s", 60.0, 0.1, 86400),
        chunk_size_serial=t.integer("chunk_size_serial", 262144, 1024, MAX_CHUNK_SIZE),
        chunk_size_usb=t.integer("chunk_size_usb", 1048576, 1024, MAX_CHUNK_SIZE),
        storage_reserve_bytes=t.integer("storage_reserve_bytes", 1 << 30, 0, 1 << 50),
        max_concurrent_offloads=t.integer("max_concurrent_offloads", 4, 1, 64),
        session_timeout_s=t.number("session_timeout_s", 10.0, 0.1, 600),
        status_interval_s=t.number("status_interval_s", 5.0, 0.1, 86400),
        outbox_rate_per_s=t.number("outbox_rate_per_s", 50.0, 0.01, 100000),
        log_level=t.choice("log_level", str, tuple(_LOG_LEVELS), "info"),
        usb_backend=_usb_backend(t),
        usb_ids=_usb_ids(t),
        console_public_keys=tuple(
            t.base_dir / p for p in t.strings("console_public_keys", ())),
        tls=_tls(t.sub("tls"), broker),
        readiness=_readiness(t.sub("readiness")),
        clock=_clock(t.sub("clock")),
        compliance=_compliance(t.sub("compliance")),
    )
    t.finish()
    if config.clock.max_residual_ms > config.readiness.clock_tolerance_ms:
        # The sync would "succeed" and readiness still report clock_unsynced: a contradiction.
        raise ConfigError(
            f"config key 'clock.max_residual_ms': must not exceed readiness.clock_tolerance_ms "
            f"({config.readiness.clock_tolerance_ms}), got {config.clock.max_residual_ms}",
            "clock.max_residual_ms")
    return config


def _readiness(t: _Table) -> ReadinessConfig:
    cfg = ReadinessConfig(
        battery_min_pct=t.integer("battery_min_pct", 90, 0, 100),
        storage_min_hours=t.integer("storage_min_hours", 8, 0, 1000),
        clock_tolerance_ms=t.integer("clock_tolerance_ms", 1000, 1, 3_600_000),
    )
    t.finish()
    return cfg


def _compliance(t: _Table) -> ComplianceConfig:
    cfg = ComplianceConfig(
        gap_threshold_s=t.integer("gap_threshold_s", 600, 1, 86_400),
        overdue_after_s=t.integer("overdue_after_s", 86_400, 60, 30 * 86_400),
        # Art. 15 keeps footage 120 months: the setting can only lengthen that.
        retention_months=t.integer("retention_months", 120, 120, 1200),
        command_max_age_s=t.integer("command_max_age_s", 300, 10, 86_400),
    )
    t.finish()
    return cfg


def _clock(t: _Table) -> ClockConfig:
    cfg = ClockConfig(
        require_ntp_sync=t.boolean("require_ntp_sync", True),
        max_residual_ms=t.integer("max_residual_ms", 20, 1, 3_600_000),
        sync_attempts=t.integer("sync_attempts", 3, 1, 100),
    )
    t.finish()
    return cfg


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` naming the file or the key."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r}: not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r}: not UTF-8 ({exc.reason} at byte "
                          f"{exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r}: TOML syntax error: {exc}") from None
    # absolute(), not resolve(): paths are relative to the file as named, not a symlink target.
    return _parse(_Table(data, "", path.absolute().parent))
