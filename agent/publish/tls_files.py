"""The files of the broker connection's mutual TLS, checked before the daemon starts.

The agent refuses to start when TLS is configured but a file is missing or unreadable, when
the private key (or its password file) is open to anyone but the agent's user, when the key
cannot be decrypted, or when the client certificate is not the key's. Each refusal is a
:class:`TlsFileError` naming the ``[tls]`` key at fault, so that the one line an operator sees
says what to fix. A certificate that is expired or not valid yet is only *warned* about: the
broker will refuse the connection, but the agent keeps offloading cameras into its durable
outbox meanwhile — stopping the dock would be worse for the evidence than waiting for a renewed
certificate.

Only file metadata, public certificate data and the key's type reach the messages; never key
material or the password.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

__all__ = ["SECRET_FILE_MODES", "TlsFileError", "TlsFiles", "check_tls_files",
           "read_key_password"]

log = logging.getLogger(__name__)

# Owner read-write or owner read-only: nobody but the agent's user (and root) can read them.
SECRET_FILE_MODES = (0o600, 0o400)
_EXPIRY_WARNING = dt.timedelta(days=30)


class TlsFileError(ValueError):
    """A TLS file is unusable; ``field`` is the ``[tls]`` key at fault (``"key_file"``…)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password_file: Path | None = None


def read_key_password(path: str | os.PathLike[str]) -> bytes:
    """The password in ``path``: its content without the trailing line break."""
    return Path(path).read_bytes().rstrip(b"\r\n")


def check_tls_files(files: TlsFiles, *, now: dt.datetime | None = None) -> None:
    """Raise :class:`TlsFileError` for the first problem found; log a warning for a client
    certificate that is expired, not valid yet or expiring within 30 days."""
    ca_pem = _read(files.ca_file, "ca_file", secret=False)
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        cas = []
    if not cas:
        raise TlsFileError("ca_file", f"{_q(files.ca_file)} holds no PEM certificate")
    if files.cert_file is None or files.key_file is None:
        return  # load_config already insists on both or neither
    cert_pem = _read(files.cert_file, "cert_file", secret=False)
    key_pem = _read(files.key_file, "key_file", secret=True)
    password = None
    if files.key_password_file is not None:
        _read(files.key_password_file, "key_password_file", secret=True)
        password = read_key_password(files.key_password_file)
        if not password:
            raise TlsFileError("key_password_file", f"{_q(files.key_password_file)} is empty")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        chain = []
    if not chain:
        raise TlsFileError("cert_file", f"{_q(files.cert_file)} holds no PEM certificate")
    key = _load_key(files, key_pem, password)
    cert = chain[0]  # the client certificate; any others are its intermediates
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise TlsFileError("cert_file", f"{_q(files.cert_file)} is not the certificate of "
                           f"tls.key_file {_q(files.key_file)} (its public key differs)")
    _warn_validity(cert, files.cert_file, now or dt.datetime.now(dt.UTC))


def _q(path: Path | None) -> str:
    return repr(str(path))


def _read(path: Path, field: str, *, secret: bool) -> bytes:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise TlsFileError(field, f"{_q(path)} is not a regular file")
        if secret:
            _check_private(path, st, field)
        return path.read_bytes()
    except OSError as exc:
        raise TlsFileError(field, f"cannot read {_q(path)}: {exc.strerror}") from None


def _check_private(path: Path, st: os.stat_result, field: str) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if mode not in SECRET_FILE_MODES:
        raise TlsFileError(field, f"{_q(path)} has mode {mode:04o}, too permissive for a secret: "
                           "it must be 0600 or 0400 (only its owner may read it)")
    # Owned by another (non-root) user, that user can read it, or chmod it open again.
    if st.st_uid not in (os.geteuid(), 0):
        raise TlsFileError(field, f"{_q(path)} is owned by uid {st.st_uid}, not by the agent's "
                           f"user (uid {os.geteuid()}) or root")


def _load_key(files: TlsFiles, pem: bytes, password: bytes | None) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password)
    except TypeError:  # cryptography's way of saying the password and the key disagree
        if password is None:
            raise TlsFileError("key_file", f"{_q(files.key_file)} is encrypted: set "
                               "tls.key_password_file") from None
        raise TlsFileError("key_password_file", f"is set but tls.key_file {_q(files.key_file)} "
                           "is not encrypted") from None
    except UnsupportedAlgorithm:
        raise TlsFileError("key_file", f"{_q(files.key_file)}: unsupported key type") from None
    except ValueError:
        if password is not None and b"ENCRYPTED" in pem:
            raise TlsFileError("key_password_file", f"{_q(files.key_password_file)} does not "
                               f"decrypt tls.key_file {_q(files.key_file)}") from None
        raise TlsFileError("key_file", f"{_q(files.key_file)} holds no PEM private key") from None


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _warn_validity(cert: x509.Certificate, path: Path, now: dt.datetime) -> None:
    subject = cert.subject.rfc4514_string()
    if now < cert.not_valid_before_utc:
        log.warning("tls.cert_file %s (%s) is not valid before %s: check the dock's clock; the "
                    "broker will refuse the connection until then", _q(path), subject,
                    cert.not_valid_before_utc.isoformat())
    elif now > cert.not_valid_after_utc:
        log.warning("tls.cert_file %s (%s) expired on %s: the broker will refuse the connection; "
                    "everything waits in the outbox until it is renewed", _q(path), subject,
                    cert.not_valid_after_utc.isoformat())
    elif cert.not_valid_after_utc - now < _EXPIRY_WARNING:
        log.warning("tls.cert_file %s (%s) expires on %s: renew it", _q(path), subject,
                    cert.not_valid_after_utc.isoformat())
