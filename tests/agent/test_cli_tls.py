"""``dock-agent tls init``: a 0600 key and a CSR with CN = dock_id, O = unit; never overwrites."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.cli import main

CONFIG = 'dock_id = "zhanhe-dock-01"\nunit = "zhanhe-legal"\nstate_dir = "state"\n'


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "agent.toml"
    path.parent.mkdir()
    path.write_text(CONFIG)
    return path


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the key must come out 0600 whatever the installer's umask
    yield
    os.umask(old)


def spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def test_init_makes_a_private_key_and_a_csr_for_the_dock(
    config: Path, capsys: pytest.CaptureFixture[str], open_umask: None
) -> None:
    assert main(["tls", "init", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    directory = config.parent / "tls"  # default: tls/ beside the configuration
    key_path, csr_path = directory / "dock.key", directory / "dock.csr"

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"

    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "zhanhe-dock-01"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == \
        "zhanhe-legal"
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert spki(public) == spki(key.public_key())  # the request is for this very key
    usage = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    # What to send, what to check with the PKI, which keys to set.
    assert f"request:     {csr_path} (CN=zhanhe-dock-01, O=zhanhe-legal)" in out
    assert f"public key SHA-256: {hashlib.sha256(spki(public)).hexdigest()}" in out
    assert f'key_file = "{key_path}"' in out and f'cert_file = "{directory / "dock.pem"}"' in out
    assert f'ca_file = "{directory / "ca.pem"}"' in out and "[tls]" in out
    assert "BEGIN" not in out  # no key material on the terminal


def test_init_refuses_to_overwrite_and_leaves_files_alone(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tls", "init", "--config", str(config)]) == 0
    directory = config.parent / "tls"
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    capsys.readouterr()
    assert main(["tls", "init", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"dock-agent tls: error: {directory / 'dock.key'} exists; "
                            "refusing to overwrite\n")
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before

    # Only the CSR left over (key deleted by hand): still refused, and no new key appears.
    (directory / "dock.key").unlink()
    assert main(["tls", "init", "--config", str(config)]) == 1
    assert "dock.csr exists; refusing to overwrite" in capsys.readouterr().err
    assert not (directory / "dock.key").exists()


def test_init_out_dir(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "elsewhere"
    assert main(["tls", "init", "--config", str(config), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dock.csr", "dock.key"]
    assert not (config.parent / "tls").exists()
    assert f"private key: {out / 'dock.key'}" in capsys.readouterr().out


def test_init_writes_where_the_configuration_expects_the_key(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(CONFIG + 'broker = "mqtts://mqtt.example:8883"\n[tls]\n'
                      'ca_file = "pki/unit-ca.pem"\ncert_file = "pki/station.pem"\n'
                      'key_file = "pki/station.key"\n')
    (config.parent / "pki").mkdir()
    assert main(["tls", "init", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    pki = config.parent / "pki"
    assert sorted(p.name for p in pki.iterdir()) == ["station.csr", "station.key"]
    assert 'broker = "mqtts://mqtt.example:8883"' in out
    assert f'cert_file = "{pki / "station.pem"}"' in out
    assert f'ca_file = "{pki / "unit-ca.pem"}"' in out
