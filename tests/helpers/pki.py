"""A throw-away PKI (CA, server and client certificates) written to a directory."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["CertAuthority", "Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with the password in key_password_file
    key_password_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    san_ip: str | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject)).issuer_name(_name(issuer))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False, decipher_only=False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if san_ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, *, server_ip: str = "127.0.0.1", password: bytes = b"s3cret") -> Pki:
    """CA, a server certificate for ``server_ip`` and a client certificate with an encrypted key."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("bwc test CA", ca_key, "bwc test CA", ca_key, ca=True)
    server = _cert("broker", server_key, "bwc test CA", ca_key, ca=False, san_ip=server_ip)
    client = _cert("dock-0001", client_key, "bwc test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    pki = Pki(*(directory / n for n in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key", "client.key.password"
    )))
    pki.ca_file.write_bytes(ca.public_bytes(pem))
    pki.server_cert.write_bytes(server.public_bytes(pem))
    pki.client_cert.write_bytes(client.public_bytes(pem))
    pki.server_key.write_bytes(server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pki.client_key.write_bytes(client_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password)))
    pki.key_password_file.write_bytes(password + b"\n")
    return pki


class CertAuthority:
    """A throw-away CA that issues certificates on demand: for mutual-TLS tests, which need
    several client identities (one per dock, the console), a foreign CA and expired ones."""

    def __init__(self, directory: Path, name: str = "bwc test CA") -> None:
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _cert(name, self.key, name, self.key, ca=True)
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, common_name: str, *, san_ip: str | None = None, expired: bool = False
    ) -> tuple[Path, Path]:
        """A certificate and its (unencrypted, 0600) key, written as ``{common_name}.pem`` and
        ``{common_name}.key``; ``expired`` makes one whose validity ended yesterday."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(common_name, key, self.name, self.key, ca=False, san_ip=san_ip)
        if expired:
            now = dt.datetime.now(dt.UTC)
            cert = self._resign(cert, now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        cert_path = self.directory / f"{common_name}.pem"
        key_path = self.directory / f"{common_name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path

    def sign_csr(self, csr_pem: bytes, out: Path) -> Path:
        """Issue a client certificate for a CSR (what the unit's PKI does with ``tls init``)."""
        csr = x509.load_pem_x509_csr(csr_pem)
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject).issuer_name(_name(self.name))
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return out

    def _resign(
        self, cert: x509.Certificate, not_before: dt.datetime, not_after: dt.datetime
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(cert.subject).issuer_name(cert.issuer).public_key(cert.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
        )
        for extension in cert.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        return builder.sign(self.key, hashes.SHA256())
