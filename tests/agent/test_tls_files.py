"""The TLS files are checked before the daemon starts (``Config.check_files``): every refusal
names its ``tls.*`` key and the problem; an expired certificate only warns (issue 6, Security 1)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import Config, ConfigError, load_config
from agent.publish.tls_files import TlsFiles, check_tls_files
from tests.helpers import make_pki
from tests.helpers.pki import CertAuthority


@dataclass(frozen=True)
class Station:
    dir: Path
    ca: Path
    cert: Path
    key: Path
    authority: CertAuthority

    def config(self, tls: str = "") -> Config:
        """agent.toml with relative [tls] paths (resolved against the config's directory)."""
        path = self.dir / "agent.toml"
        path.write_text('dock_id = "dock-a"\nunit = "unit-t"\nbroker = "mqtts://b:8883"\n'
                        '[tls]\nca_file = "tls/ca.pem"\ncert_file = "tls/dock.pem"\n'
                        f'key_file = "tls/dock.key"\n{tls}')
        return load_config(path)


@pytest.fixture
def station(tmp_path: Path) -> Station:
    authority = CertAuthority(tmp_path / "pki")
    cert, key = authority.issue("dock-a")
    tls = tmp_path / "tls"
    tls.mkdir()
    paths = [shutil.copy(p, tls / name) for p, name in (
        (authority.ca_file, "ca.pem"), (cert, "dock.pem"), (key, "dock.key"))]
    (tls / "dock.key").chmod(0o600)
    return Station(tmp_path, *map(Path, paths), authority=authority)


def refusal(cfg: Config) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg.check_files()
    assert "\n" not in str(info.value)  # one line
    assert str(info.value).startswith(f"config key '{info.value.key}': ")
    return info.value


def test_a_sound_configuration_passes(station: Station) -> None:
    station.config().check_files()
    station.key.chmod(0o400)  # read-only for the owner is fine too
    station.config().check_files()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700, 0o610])
def test_key_open_to_anyone_but_its_owner_is_refused(station: Station, mode: int) -> None:
    station.key.chmod(mode)
    error = refusal(station.config())
    assert error.key == "tls.key_file"
    assert f"has mode {mode:04o}, too permissive" in str(error) and "0600 or 0400" in str(error)


def test_password_file_open_to_others_is_refused(station: Station, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "encrypted")  # its client key is encrypted with a password
    shutil.copy(pki.client_cert, station.cert)
    shutil.copy(pki.client_key, station.key)
    station.key.chmod(0o600)
    shutil.copy(pki.ca_file, station.ca)
    password = station.dir / "tls" / "pw"
    shutil.copy(pki.key_password_file, password)
    password.chmod(0o644)
    error = refusal(station.config('key_password_file = "tls/pw"\n'))
    assert error.key == "tls.key_password_file" and "too permissive" in str(error)
    password.chmod(0o600)
    station.config('key_password_file = "tls/pw"\n').check_files()  # and then it is fine


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_key_owned_by_another_user_is_refused(station: Station) -> None:
    os.chown(station.key, 65534, 65534)  # nobody
    error = refusal(station.config())
    assert error.key == "tls.key_file" and "owned by uid 65534" in str(error)


@pytest.mark.parametrize("name", ["ca.pem", "dock.pem", "dock.key"])
def test_missing_file_is_refused(station: Station, name: str) -> None:
    (station.dir / "tls" / name).unlink()
    key = {"ca.pem": "tls.ca_file", "dock.pem": "tls.cert_file", "dock.key": "tls.key_file"}
    error = refusal(station.config())
    assert error.key == key[name]
    assert f"cannot read '{station.dir / 'tls' / name}'" in str(error)
    assert "No such file or directory" in str(error)


def test_directory_instead_of_a_file_is_refused(station: Station) -> None:
    station.cert.unlink()
    station.cert.mkdir()
    assert refusal(station.config()).key == "tls.cert_file"


@pytest.mark.parametrize(("name", "key"), [("ca.pem", "tls.ca_file"),
                                           ("dock.pem", "tls.cert_file")])
def test_file_without_a_certificate_is_refused(station: Station, name: str, key: str) -> None:
    (station.dir / "tls" / name).write_text("not a certificate\n")
    error = refusal(station.config())
    assert error.key == key and "holds no PEM certificate" in str(error)


def test_file_without_a_key_is_refused(station: Station) -> None:
    station.key.write_bytes(station.cert.read_bytes())  # a certificate where the key should be
    error = refusal(station.config())
    assert error.key == "tls.key_file" and "holds no PEM private key" in str(error)


def test_certificate_of_another_key_is_refused(station: Station) -> None:
    other_cert, _ = station.authority.issue("dock-a-old")
    shutil.copy(other_cert, station.cert)
    error = refusal(station.config())
    assert error.key == "tls.cert_file"
    assert "is not the certificate of tls.key_file" in str(error)


@pytest.fixture
def encrypted(station: Station, tmp_path: Path) -> Callable[[bytes], Config]:
    """The station with an encrypted key; the argument is what the password file holds."""
    pki = make_pki(tmp_path / "encrypted", password=b"s3cret")
    shutil.copy(pki.client_cert, station.cert)
    shutil.copy(pki.client_key, station.key)
    station.key.chmod(0o600)

    def configure(password: bytes) -> Config:
        pw = station.dir / "tls" / "pw"
        pw.write_bytes(password)
        pw.chmod(0o600)
        return station.config('key_password_file = "tls/pw"\n')
    return configure


def test_encrypted_key_with_its_password_passes(encrypted: Callable[[bytes], Config]) -> None:
    encrypted(b"s3cret\n").check_files()  # the trailing line break is not part of it


def test_encrypted_key_without_password_is_refused(
    encrypted: Callable[[bytes], Config], station: Station
) -> None:
    encrypted(b"s3cret")
    error = refusal(station.config())
    assert error.key == "tls.key_file" and "is encrypted: set tls.key_password_file" in str(error)


@pytest.mark.parametrize(("password", "problem"), [
    (b"Qz7-not-it\n", "does not decrypt tls.key_file"), (b"\n", "is empty")])
def test_wrong_or_empty_password_is_refused(
    encrypted: Callable[[bytes], Config], password: bytes, problem: str
) -> None:
    error = refusal(encrypted(password))
    assert error.key == "tls.key_password_file" and problem in str(error)
    assert "s3cret" not in str(error) and "Qz7" not in str(error)  # never a password


def test_password_for_an_unencrypted_key_is_refused(station: Station) -> None:
    pw = station.dir / "tls" / "pw"
    pw.write_bytes(b"s3cret\n")
    pw.chmod(0o600)
    error = refusal(station.config('key_password_file = "tls/pw"\n'))
    assert error.key == "tls.key_password_file" and "is not encrypted" in str(error)


def test_certificate_validity_only_warns(station: Station, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    caplog.set_level(logging.WARNING, logger="agent.publish.tls_files")
    files = TlsFiles(station.ca, station.cert, station.key)
    now = dt.datetime.now(dt.UTC)
    check_tls_files(files, now=now + dt.timedelta(days=2))  # after the 1-day certificate
    check_tls_files(files, now=now - dt.timedelta(days=1))  # before it
    check_tls_files(files, now=now)  # within 30 days of its end
    expired, not_yet, soon = (r.getMessage() for r in caplog.records)
    assert "expired on" in expired and "the broker will refuse the connection" in expired
    assert "is not valid before" in not_yet and "check the dock's clock" in not_yet
    assert "expires on" in soon and "renew it" in soon

    # The start-up check itself: an expired certificate warns but does not stop the agent,
    # which keeps offloading into the outbox while the certificate is renewed.
    cert, key = station.authority.issue("dock-a-expired", expired=True)
    shutil.copy(cert, station.cert)
    shutil.copy(key, station.key)
    caplog.clear()
    station.config().check_files()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "expired on" in caplog.records[0].getMessage()
