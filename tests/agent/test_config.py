"""agent.config: defaults, every refusal names its key, paths, cross-checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import (
    BrokerAddress,
    Config,
    ConfigError,
    Delivery,
    Enrollment,
    EraseAfter,
    UsbId,
    load_config,
)
from tests.helpers import make_pki

MINIMAL = 'dock_id = "dock-01"\nunit = "zhanhe"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return info.value


def test_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    assert (cfg.dock_id, cfg.unit) == ("dock-01", "zhanhe")
    assert cfg.state_dir == Path("/var/lib/bwc-dock")
    assert cfg.serial_ports == ("/dev/serial/by-id/*bwc*",)
    assert cfg.broker == "" and cfg.broker_address is None
    assert cfg.delivery is Delivery.CONSOLE_ACK and cfg.delivery == "console-ack"
    assert cfg.erase_after is EraseAfter.ACKNOWLEDGED
    assert cfg.enrollment is Enrollment.STRICT
    assert cfg.topic_prefix == "bwc/{unit}/{dock_id}"
    assert cfg.topic_prefix_resolved == "bwc/zhanhe/dock-01"
    assert cfg.health_interval_s == 60.0
    assert cfg.chunk_size_serial == 262144
    assert cfg.max_concurrent_offloads == 4
    assert cfg.session_timeout_s == 10.0
    assert cfg.outbox_rate_per_s == 50.0
    assert cfg.log_level == "info" and cfg.log_level_number == 20
    assert cfg.usb_backend == "libusb1"
    assert cfg.usb_ids == (UsbId(0x1D6B, 0x0104),) and str(cfg.usb_ids[0]) == "1d6b:0104"
    assert cfg.console_public_keys == ()
    assert cfg.tls.ca_file is None and cfg.tls.cert_file is None
    assert cfg.tls.key_file is None and cfg.tls.key_password_file is None
    assert (cfg.readiness.battery_min_pct, cfg.readiness.storage_min_hours,
            cfg.readiness.clock_tolerance_ms) == (90, 8, 1000)
    assert (cfg.clock.require_ntp_sync, cfg.clock.max_residual_ms,
            cfg.clock.sync_attempts) == (True, 20, 3)


def test_every_key_set(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL + """
state_dir = "state"
serial_ports = ["/dev/bwc/tty-*", "/dev/pts/*"]
broker = "mqtts://broker.example:8883"
delivery = "puback"
erase_after = "never"
enrollment = "trust-on-first-use"
topic_prefix = "fleet/{dock_id}/x-{unit}"
health_interval_s = 0.5
chunk_size_serial = 65536
max_concurrent_offloads = 2
session_timeout_s = 3
outbox_rate_per_s = 5
log_level = "debug"
usb_backend = "libusb0"
usb_ids = ["ABCD:0001", "1d6b:0104"]
console_public_keys = ["keys/console.pub", "/etc/bwc-dock/c2.pub"]
[tls]
ca_file = "tls/ca.pem"
cert_file = "/abs/cert.pem"
key_file = "tls/key.pem"
key_password_file = "tls/pw"
[readiness]
battery_min_pct = 50
storage_min_hours = 2
clock_tolerance_ms = 500
[clock]
require_ntp_sync = false
max_residual_ms = 100
sync_attempts = 5
""")
    base = tmp_path.resolve()
    assert cfg.state_dir == base / "state"
    assert cfg.serial_ports == ("/dev/bwc/tty-*", "/dev/pts/*")
    assert cfg.broker_address == BrokerAddress(True, "broker.example", 8883)
    assert cfg.delivery is Delivery.PUBACK
    assert cfg.erase_after is EraseAfter.NEVER
    assert cfg.enrollment is Enrollment.TRUST_ON_FIRST_USE
    assert cfg.topic_prefix_resolved == "fleet/dock-01/x-zhanhe"
    assert (cfg.health_interval_s, cfg.session_timeout_s, cfg.outbox_rate_per_s) == (0.5, 3, 5)
    assert isinstance(cfg.session_timeout_s, float)
    assert (cfg.chunk_size_serial, cfg.max_concurrent_offloads) == (65536, 2)
    assert cfg.log_level_number == 10 and cfg.usb_backend == "libusb0"
    assert cfg.usb_ids == (UsbId(0xABCD, 1), UsbId(0x1D6B, 0x0104))
    assert cfg.console_public_keys == (base / "keys/console.pub", Path("/etc/bwc-dock/c2.pub"))
    assert cfg.tls.ca_file == base / "tls/ca.pem"
    assert cfg.tls.cert_file == Path("/abs/cert.pem")
    assert cfg.tls.key_password_file == base / "tls/pw"
    assert cfg.readiness.clock_tolerance_ms == 500 and cfg.clock.max_residual_ms == 100
    assert cfg.clock.require_ntp_sync is False and cfg.clock.sync_attempts == 5


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    with pytest.raises(AttributeError):
        cfg.dock_id = "other"  # type: ignore[misc]
    assert cfg.dock_id == "dock-01"


@pytest.mark.parametrize(("broker", "expected"), [
    ("mqtt://localhost:1883", BrokerAddress(False, "localhost", 1883)),
    ("mqtt://[::1]:1884", BrokerAddress(False, "::1", 1884)),
    ("mqtt://10.0.0.7:65535", BrokerAddress(False, "10.0.0.7", 65535)),
])
def test_broker_forms(tmp_path: Path, broker: str, expected: BrokerAddress) -> None:
    assert load_text(tmp_path, MINIMAL + f'broker = "{broker}"\n').broker_address == expected


# (snippet appended to a valid file, key the error must name, fragment of the message)
BAD_VALUES = [
    ('[readiness]\nbattery_min_pct = 120\n', "readiness.battery_min_pct",
     "must be an integer 0..100, got 120"),
    ('[readiness]\nbattery_min_pct = 90.0\n', "readiness.battery_min_pct", "integer"),
    ('[readiness]\nstorage_min_hours = -1\n', "readiness.storage_min_hours", "got -1"),
    ('[readiness]\nclock_tolerance_ms = "1s"\n', "readiness.clock_tolerance_ms", "'1s'"),
    ('[clock]\nrequire_ntp_sync = "yes"\n', "clock.require_ntp_sync", "true or false"),
    ('[clock]\nmax_residual_ms = 0\n', "clock.max_residual_ms", "integer"),
    ('[clock]\nsync_attempts = true\n', "clock.sync_attempts", "got true"),
    ('state_dir = 5\n', "state_dir", "path"),
    ('state_dir = ""\n', "state_dir", "non-empty"),
    ('serial_ports = "/dev/tty*"\n', "serial_ports", "list"),
    ('serial_ports = ["dev/tty*"]\n', "serial_ports", "absolute"),
    ('serial_ports = [""]\n', "serial_ports", "non-empty"),
    ('broker = "tcp://host:1883"\n', "broker", "mqtt://host:port"),
    ('broker = "mqtt://host"\n', "broker", "mqtt://host:port"),
    ('broker = "mqtt://host:99999"\n', "broker", "mqtt://host:port"),
    ('broker = "mqtt://user:pw@host:1883"\n', "broker", "mqtt://host:port"),
    ('broker = "mqtt://host:1883/path"\n', "broker", "mqtt://host:port"),
    ('broker = 1883\n', "broker", "string"),
    ('delivery = "qos2"\n', "delivery", "'console-ack', 'puback'"),
    ('erase_after = "sotred"\n', "erase_after", "'acknowledged', 'stored', 'never'"),
    ('enrollment = "tofu"\n', "enrollment", "trust-on-first-use"),
    ('topic_prefix = "bwc/{site}"\n', "topic_prefix", "{site}"),
    ('topic_prefix = "bwc/+/x"\n', "topic_prefix", "wildcards"),
    ('topic_prefix = "/bwc"\n', "topic_prefix", "empty levels"),
    ('topic_prefix = "bwc/{unit"\n', "topic_prefix", "placeholder"),
    ('health_interval_s = 0\n', "health_interval_s", "number"),
    ('health_interval_s = nan\n', "health_interval_s", "number"),
    ('session_timeout_s = inf\n', "session_timeout_s", "number"),
    ('outbox_rate_per_s = false\n', "outbox_rate_per_s", "number"),
    ('chunk_size_serial = 100\n', "chunk_size_serial", "1024..16777216"),
    ('max_concurrent_offloads = 0\n', "max_concurrent_offloads", "1..64"),
    ('log_level = "verbose"\n', "log_level", "'debug'"),
    ('usb_backend = "winusb"\n', "usb_backend", "'libusb1'"),
    ('usb_ids = ["1d6b0104"]\n', "usb_ids", "vvvv:pppp"),
    ('usb_ids = [4711]\n', "usb_ids", "list of non-empty strings"),
    ('console_public_keys = "k.pub"\n', "console_public_keys", "list"),
    ('tls = "none"\n', "tls", "must be a table"),
    ('readiness = 5\n', "readiness", "must be a table"),
]


@pytest.mark.parametrize(("snippet", "key", "fragment"), BAD_VALUES)
def test_bad_value_names_key(tmp_path: Path, snippet: str, key: str, fragment: str) -> None:
    # Tables must come after top-level keys in TOML, so top-level snippets go first.
    text = MINIMAL + snippet if snippet.startswith("[") else snippet + MINIMAL
    error = refused(tmp_path, text)
    assert error.key == key
    assert str(error).startswith(f"config key '{key}': ")
    assert fragment in str(error)


def test_message_format_from_the_issue(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + "[readiness]\nbattery_min_pct = 120\n")
    assert str(error) == ("config key 'readiness.battery_min_pct': must be an integer 0..100, "
                          "got 120")


@pytest.mark.parametrize(("text", "key"), [
    ('unit = "zhanhe"\n', "dock_id"),
    ('dock_id = "dock-01"\n', "unit"),
    ('dock_id = "dock/01"\nunit = "zhanhe"\n', "dock_id"),
    ('dock_id = "dock-01"\nunit = ""\n', "unit"),
    ('dock_id = "' + "x" * 65 + '"\nunit = "zhanhe"\n', "dock_id"),
    ('dock_id = "dock-01"\nunit = "zhanhe ünit"\n', "unit"),
])
def test_identity_keys(tmp_path: Path, text: str, key: str) -> None:
    error = refused(tmp_path, text)
    assert error.key == key and f"'{key}'" in str(error)
    assert "A-Z a-z 0-9 _ -" in str(error)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + 'erase_afer = "never"\n')
    assert error.key == "erase_afer"
    assert str(error) == "config key 'erase_afer': unknown key (did you mean 'erase_after'?)"


def test_unknown_nested_key(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + "[readiness]\nbattery_pct = 80\n")
    assert error.key == "readiness.battery_pct"
    assert "unknown key" in str(error) and "battery_min_pct" in str(error)


def test_unknown_key_without_close_match_lists_known(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + "[clock]\nzzz = 1\n")
    assert str(error) == ("config key 'clock.zzz': unknown key (known keys: max_residual_ms, "
                          "require_ntp_sync, sync_attempts)")


def test_unknown_table(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + "[mqtt]\nhost = 'x'\n")
    assert error.key == "mqtt" and "unknown key" in str(error)


def test_unknown_sub_table_of_known_table(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + "[clock.ntp]\nserver = 'x'\n")
    assert error.key == "clock.ntp"


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "broker = mqtt://x:1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"config file '{path}': TOML syntax error: ")
    assert "line 3" in message and info.value.key is None


def test_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "agent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"config file '{path}': not found"


def test_unreadable_path_names_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)  # a directory
    assert str(info.value).startswith(f"config file '{tmp_path}': cannot read")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(MINIMAL.encode() + b'log_level = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not UTF-8" in str(info.value) and str(path) in str(info.value)


def test_mqtts_requires_ca_file(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + 'broker = "mqtts://b:8883"\n')
    assert error.key == "tls.ca_file" and "mqtts://" in str(error)


def test_tls_without_mqtts_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + 'broker = "mqtt://b:1883"\n[tls]\nca_file = "ca.pem"\n')
    assert error.key == "tls.ca_file" and "not an mqtts://" in str(error)


@pytest.mark.parametrize(("tls", "key"), [
    ('cert_file = "c.pem"', "tls.key_file"),
    ('key_file = "k.pem"', "tls.cert_file"),
])
def test_cert_and_key_together(tmp_path: Path, tls: str, key: str) -> None:
    text = MINIMAL + f'broker = "mqtts://b:8883"\n[tls]\nca_file = "ca.pem"\n{tls}\n'
    assert refused(tmp_path, text).key == key


def test_key_password_needs_key(tmp_path: Path) -> None:
    text = MINIMAL + 'broker = "mqtts://b:8883"\n[tls]\nca_file = "ca"\nkey_password_file = "p"\n'
    assert refused(tmp_path, text).key == "tls.key_password_file"


def test_residual_target_within_readiness_tolerance(tmp_path: Path) -> None:
    error = refused(tmp_path, MINIMAL + "[readiness]\nclock_tolerance_ms = 10\n")
    assert error.key == "clock.max_residual_ms"
    assert "readiness.clock_tolerance_ms (10)" in str(error)


def test_check_files(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(make_pki(tmp_path / "pki").ca_file.read_bytes())
    cfg = load_text(tmp_path, MINIMAL + 'broker = "mqtts://b:8883"\n'
                    'console_public_keys = ["c.pub"]\n[tls]\nca_file = "ca.pem"\n')
    with pytest.raises(ConfigError) as info:
        cfg.check_files()
    assert info.value.key == "console_public_keys[0]"
    assert str(tmp_path / "c.pub") in str(info.value)
    (tmp_path / "c.pub").write_text("key")
    cfg.check_files()
    (tmp_path / "ca.pem").unlink()
    with pytest.raises(ConfigError) as info:
        cfg.check_files()
    assert info.value.key == "tls.ca_file" and "cannot read" in str(info.value)
