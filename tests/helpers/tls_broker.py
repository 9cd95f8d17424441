"""A mosquitto TLS listener as docs/operations.md sets one up: client certificates required,
the certificate's CN as the MQTT user name, and the ACL the document recommends."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["ACL_MARKER", "documented_acl", "tls_listener_conf"]

ROOT = Path(__file__).resolve().parents[2]
ACL_MARKER = "<!-- mosquitto-acl -->"


def documented_acl() -> str:
    """The mosquitto ACL of docs/operations.md (the fenced block after its marker), so that the
    documented ACL is the one the tests run against."""
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    match = re.search(re.escape(ACL_MARKER) + r"\s*```\w*\n(.*?)```", doc, re.S)
    assert match, f"docs/operations.md has no ACL block after {ACL_MARKER}"
    return match[1]


def tls_listener_conf(ca_file: Path, cert_file: Path, key_file: Path) -> str:
    """Options for the broker's (only) listener; append with ``Mosquitto(extra_conf=…)``."""
    return (f"cafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\n"
            "require_certificate true\nuse_identity_as_username true\n"
            "tls_version tlsv1.2\n")  # mosquitto 2.0: the minimum; TLS 1.3 is negotiated here
