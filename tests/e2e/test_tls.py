"""The real daemon over mutual TLS (issue 6, Security 1-2): ``dock-agent tls init`` makes the
dock's key and CSR, a test CA signs it as the unit's PKI would, and the agent offloads a camera
and delivers its manifests to a console through a mosquitto that demands client certificates and
applies the ACL of docs/operations.md; the console's acks come back the same way and the camera
is released. And ``dock-agent run`` refuses to start, with one line naming the key, when the
TLS files are unusable."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.e2e.harness import PY, REPO, Harness, make_media
from tests.helpers import Mosquitto
from tests.helpers.pki import CertAuthority
from tests.helpers.tls_broker import documented_acl, tls_listener_conf

K = 1024
HOST = "127.0.0.1"


def test_tls_init_signed_certificate_carries_offload_and_acks_over_mutual_tls(
    e2e: Harness, mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    pki = CertAuthority(tmp_path / "pki")
    broker = mosquitto_factory(acl=documented_acl(), extra_conf=tls_listener_conf(
        pki.ca_file, *pki.issue("broker", san_ip=HOST)))
    tls_dir = e2e.root / "agent" / "tls"  # the agent's directory, made by make_agent
    alpha = e2e.camera("alpha", media=make_media([150 * K + 7, 64 * K]))
    agent = e2e.make_agent(broker, settings={
        "broker": f"mqtts://{HOST}:{broker.port}",
        "tls": {"ca_file": tls_dir / "ca.pem", "cert_file": tls_dir / "dock.pem",
                "key_file": tls_dir / "dock.key"},
    })

    # The installer's side: key and CSR where the configuration expects them...
    done = agent.cli("tls", "init")
    assert done.returncode == 0, done.stderr
    assert f"request:     {tls_dir / 'dock.csr'} (CN={agent.dock_id}, O={agent.unit})" \
        in done.stdout
    csr = x509.load_pem_x509_csr((tls_dir / "dock.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == agent.dock_id
    assert (tls_dir / "dock.key").stat().st_mode & 0o777 == 0o600
    # ...the PKI signs it; the certificate and the CA bundle are installed.
    pki.sign_csr((tls_dir / "dock.csr").read_bytes(), tls_dir / "dock.pem")
    shutil.copy(pki.ca_file, tls_dir / "ca.pem")

    agent.enroll(alpha)
    console_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    console_tls.load_verify_locations(cafile=pki.ca_file)
    console_tls.load_cert_chain(*pki.issue("console"))
    console = e2e.console(broker, tls=console_tls)
    agent.start()

    # The broker knows the dock by its certificate: user name = CN = dock_id.
    e2e.wait(lambda: f"as bwc-dock-{agent.dock_id} (p5, c1, k30, u'{agent.dock_id}')"
             in broker.log_text(), "the dock's TLS connection in the broker's log")
    e2e.wait(lambda: set(console.verified_for(alpha)) == set(alpha.recordings),
             "a verified manifest for every recording, over TLS")
    # The console's acks reach the dock (the ACL lets it read …/acks): the camera is released.
    e2e.wait(lambda: alpha.released() == set(alpha.recordings), "the camera told to erase")
    assert console.snapshot()["rejected"] == []
    assert "Denied PUBLISH" not in broker.log_text()  # the ACL covers every topic it used
    assert "Denied SUBSCRIBE" not in broker.log_text()
    assert "refused" not in agent.log_text()


# ------------------------------------------------------------------ refuses to start

@pytest.fixture
def tls_station(tmp_path: Path) -> tuple[Path, Path]:
    """A config with mutual TLS whose files are all sound; the test then breaks one."""
    pki = CertAuthority(tmp_path / "pki")
    cert, key = pki.issue("dock-1")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'dock_id = "dock-1"\nunit = "unit-1"\nstate_dir = "{tmp_path / "state"}"\n'
        'broker = "mqtts://127.0.0.1:9"\nusb_ids = []\n'
        f'[tls]\nca_file = "{pki.ca_file}"\ncert_file = "{cert}"\nkey_file = "{key}"\n')
    return config, key


def run_refused(config: Path) -> str:
    done = subprocess.run([PY, "-m", "agent.cli", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.stdout == ""
    assert not (config.parent / "state").exists()  # refused before creating any state
    return lines[0]


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_run_refuses_a_key_others_can_read(tls_station: tuple[Path, Path], mode: int) -> None:
    config, key = tls_station
    key.chmod(mode)
    line = run_refused(config)
    assert line == (f"dock-agent run: error: config key 'tls.key_file': '{key}' has mode "
                    f"{mode:04o}, too permissive for a secret: it must be 0600 or 0400 "
                    "(only its owner may read it)")


def test_run_refuses_a_missing_certificate(tls_station: tuple[Path, Path]) -> None:
    config, key = tls_station
    cert = key.with_suffix(".pem")
    cert.unlink()
    assert run_refused(config) == (f"dock-agent run: error: config key 'tls.cert_file': "
                                   f"cannot read '{cert}': No such file or directory")


def test_run_refuses_a_certificate_of_another_key(tls_station: tuple[Path, Path]) -> None:
    config, key = tls_station
    other_cert, _ = CertAuthority(key.parent.parent / "pki2").issue("dock-1")
    shutil.copy(other_cert, key.with_suffix(".pem"))
    line = run_refused(config)
    assert "config key 'tls.cert_file':" in line and "is not the certificate of" in line
