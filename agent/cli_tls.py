"""``dock-agent tls init``: the dock's TLS client key and a certificate signing request.

The installer runs it once per station; the request goes to the unit's PKI, the certificate
that comes back authenticates the dock to the broker (mutual TLS, docs/operations.md). The
subject is ``CN = dock_id, O = unit``: a broker like mosquitto with ``use_identity_as_username``
takes the CN as the MQTT user name, so ACL patterns on ``%u`` confine each dock to its own
topics. The key is ECDSA P-256 (every TLS stack a broker runs supports it), written 0600 and
never overwritten: replacing a dock's key is a decision, not a side effect of a re-run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .cli_compliance import CliError
from .config import Config
from .store.durable import fsync_dir

__all__ = ["HANDLERS", "add_parsers", "make_csr"]

KEY_NAME, CSR_NAME, CERT_NAME, CA_NAME = "dock.key", "dock.csr", "dock.pem", "ca.pem"
SERVICE_USER = "bwc-dock"  # systemd/bwc-dock.sysusers


def make_csr(dock_id: str, unit: str
             ) -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    """A new key and its CSR: subject ``CN=dock_id, O=unit``, asking for client authentication."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dock_id),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, unit)])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr


def _targets(cfg: Config, args: argparse.Namespace) -> tuple[Path, Path]:
    """Where the key and the CSR go: ``--out DIR``; else next to a configured ``tls.key_file``
    (under its name); else ``tls/`` beside the config file."""
    if args.out is not None:
        directory = Path(args.out).absolute()
        return directory / KEY_NAME, directory / CSR_NAME
    if cfg.tls.key_file is not None:
        return cfg.tls.key_file, cfg.tls.key_file.with_suffix(".csr")
    directory = Path(args.config).absolute().parent / "tls"
    return directory / KEY_NAME, directory / CSR_NAME


def _create(path: Path, data: bytes, mode: int) -> None:
    """Write a new file (never an existing one: O_EXCL) and make it durable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def cmd_tls_init(cfg: Config, args: argparse.Namespace) -> int:
    key_path, csr_path = _targets(cfg, args)
    for path in (key_path, csr_path):
        if path.exists() or path.is_symlink():
            raise CliError(f"{path} exists; refusing to overwrite")
    directory = key_path.parent
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True)
    key, csr = make_csr(cfg.dock_id, cfg.unit)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        _create(key_path, key_pem, 0o600)
        try:
            _create(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644)
        except BaseException:
            key_path.unlink()
            raise
    except FileExistsError as exc:  # created meanwhile by someone else
        raise CliError(f"{exc.filename} exists; refusing to overwrite") from None
    fsync_dir(directory)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    print(_instructions(cfg, key_path, csr_path, hashlib.sha256(spki).hexdigest()))
    return 0


def _instructions(cfg: Config, key_path: Path, csr_path: Path, fingerprint: str) -> str:
    directory = key_path.parent
    cert = cfg.tls.cert_file or directory / CERT_NAME
    ca = cfg.tls.ca_file or directory / CA_NAME
    broker = cfg.broker if cfg.broker.startswith("mqtts://") else "mqtts://BROKER-HOST:8883"
    lines = [
        f"private key: {key_path} (ECDSA P-256, mode 0600; it never leaves this station)",
        f"request:     {csr_path} (CN={cfg.dock_id}, O={cfg.unit})",
        f"public key SHA-256: {fingerprint}",
        "",
        "Next:",
        f"1. Send {csr_path.name} to the unit's PKI for a TLS client certificate (clientAuth)",
        f"   with subject CN={cfg.dock_id}: the broker takes the CN as the dock's MQTT user name.",
        "   Confirm the public key SHA-256 above with the PKI by another channel.",
        f"2. Save the certificate it issues as {cert} and the CA bundle that",
        f"   verifies the broker's certificate as {ca}.",
    ]
    step = 3
    if os.geteuid() == 0:
        lines.append(f"{step}. Give the key to the service user: "
                     f"chown {SERVICE_USER}: {key_path}")
        step += 1
    lines += [
        f"{step}. Set in the configuration (docs/configuration.md, [tls]):",
        f'     broker = "{broker}"',
        "     [tls]",
        f'     ca_file = "{ca}"',
        f'     cert_file = "{cert}"',
        f'     key_file = "{key_path}"',
        f"{step + 1}. Restart the agent. It refuses to start, naming the key, if a file is missing",
        "   or unreadable, the key is readable by anyone but its owner, or the certificate is",
        "   not this key's.",
    ]
    return "\n".join(lines)


def cmd_tls(cfg: Config, args: argparse.Namespace) -> int:
    if args.tls_command == "init":
        return cmd_tls_init(cfg, args)
    raise CliError(f"unknown tls command {args.tls_command!r}")  # argparse prevents this


HANDLERS = {"tls": cmd_tls}


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    t = sub.add_parser("tls", help="the dock's TLS client identity for the broker",
                       description="dock-agent tls init [--out DIR]: make the dock's TLS key "
                                   "and a certificate signing request for the unit's PKI")
    tsub = t.add_subparsers(dest="tls_command", required=True)
    i = tsub.add_parser("init", parents=[common],
                        help="make the dock's TLS key (0600) and a CSR (CN = dock_id) for the PKI")
    i.add_argument("--out", metavar="DIR",
                   help="directory for dock.key and dock.csr (default: beside tls.key_file if "
                        "configured, else tls/ beside the configuration file)")
