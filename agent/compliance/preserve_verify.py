#!/usr/bin/env python3
"""Check a bwc-dock preservation copy (Art. 16) without the dock's software.

Shipped as ``verify.py`` in every copy; run ``python3 verify.py`` from the copy (a directory, or
a mounted disc/ISO image). Needs Python 3.11 or later, nothing else for the hash checks; the
signature checks need the ``cryptography`` package (``pip install cryptography``).

For every recording listed in ``label.json`` it checks:

1. the manifest's dock signature (Ed25519 over the canonical JSON of every other field) with the
   key in ``dock_identity.json`` - or with ``--dock-key``, which must then equal it;
2. that the seal is the one the manifest is named after and agrees with the manifest's fields,
   and that the chunk list, rebuilt into the camera's chained chunk messages, ends where the seal
   says; with a camera key (``camera_keys.json`` or ``--camera-key UID=BASE64``) also the
   camera's signatures over the seal and over every chunk;
3. the footage file: every chunk's SHA-256, its size and the SHA-256 of the whole file.

Exit status: 0 all checked and good; 1 something failed; 2 the copy cannot be read as one;
3 every hash matched but signatures could not be checked (no ``cryptography``, or no camera key).

This file deliberately imports nothing from the dock agent: a court or an expert must be able
to read it whole and run it anywhere. docs/manifest.md specifies every check.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import struct
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

try:  # Optional so the hash checks still run on a bare Python; the result then says so.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    HAVE_CRYPTOGRAPHY = True
except ImportError:
    HAVE_CRYPTOGRAPHY = False

CHUNK = struct.Struct(">8s16s16sIQI32s32s")  # the 120-byte message the camera signs per chunk
SEAL = struct.Struct(">8s16s16sIQ32s32sQQB")  # the 133-byte message it signs at the end
MEDIA = {1: "video", 2: "audio", 3: "photo"}
BLOCK = 1 << 20  # read footage in 1 MiB pieces: recordings can be many GB


class Failed(Exception):
    """One check failed; the message says which and where."""


def find(root: Path, name: str, short: str | None = None) -> Path | None:
    """``name`` in ``root``, or its ISO 9660 short name (``REC0001.MP4``, maybe ``;1`` or lower
    case) when the disc is read without Rock Ridge or Joliet extensions."""
    if (root / name).is_file():
        return root / name
    if short:
        wanted = {short.lower(), short.lower() + ";1"}
        for entry in root.iterdir():
            if entry.name.lower() in wanted and entry.is_file():
                return entry
    return None


def load_json(root: Path, name: str, short: str) -> Any:
    path = find(root, name, short)
    if path is None:
        raise Failed(f"{name}: missing")
    try:
        return json.loads(path.read_bytes())
    except ValueError as exc:
        raise Failed(f"{name}: not JSON ({exc})") from None


def b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise Failed(f"not base64: {text!r}") from None


def signed(key_raw: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def timestamp(ms: int) -> str:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def canonical(manifest: dict[str, Any]) -> bytes:
    """What the dock signed: the manifest without ``signature``, keys sorted, no whitespace,
    UTF-8 (non-ASCII characters as themselves, not ``\\u`` escapes)."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def check_manifest(m: dict[str, Any], dock_key: bytes, camera_key: bytes | None) -> list[str]:
    """Steps 1 and 2 of the module docstring; returns what could not be checked."""
    unchecked = []
    if HAVE_CRYPTOGRAPHY:
        if not signed(dock_key, b64(m["signature"]), canonical(m)):
            raise Failed("dock signature does not verify")
    else:
        unchecked.append("dock signature")
    seal = b64(m["seal"])
    if len(seal) != SEAL.size or hashlib.sha256(seal).hexdigest() != m["manifest_id"]:
        raise Failed("manifest_id is not the SHA-256 of the seal")
    magic, uid, rid, count, total, digest, last, started, ended, media = SEAL.unpack(seal)
    if (magic, uid.hex(), rid.hex(), MEDIA.get(media), timestamp(started), timestamp(ended),
            total, digest.hex()) != (b"BWCSEAL1", m["camera_uid"], m["recording_id"], m["media"],
                                     m["started_at"], m["ended_at"], m["size"], m["sha256"]):
        raise Failed("the seal disagrees with the manifest")
    use_camera = HAVE_CRYPTOGRAPHY and camera_key is not None
    if use_camera and camera_key is not None and not signed(camera_key,
                                                            b64(m["seal_signature"]), seal):
        raise Failed("camera signature over the seal does not verify")
    prev, offset = bytes(32), 0
    for i, c in enumerate(m["chunks"]):
        if c["index"] != i or c["offset"] != offset:
            raise Failed(f"chunk {i}: missing, out of order or not contiguous")
        message = CHUNK.pack(b"BWCCHNK1", uid, rid, i, offset, c["size"],
                             bytes.fromhex(c["sha256"]), prev)
        if use_camera and camera_key is not None and not signed(camera_key, b64(c["signature"]),
                                                                message):
            raise Failed(f"chunk {i}: camera signature does not verify")
        prev, offset = hashlib.sha256(message).digest(), offset + c["size"]
    if (len(m["chunks"]), offset, prev) != (count, total, last):
        raise Failed("the chunk list does not end where the seal says")
    if not use_camera:
        unchecked.append("camera signatures")
    return unchecked


def pieces(f: BinaryIO, size: int, name: str) -> Iterator[bytes]:
    """The next ``size`` bytes of ``f``, in pieces of at most 1 MiB."""
    while size:
        data = f.read(min(size, BLOCK))
        if not data:
            raise Failed(f"{name}: file is shorter than the manifest says")
        size -= len(data)
        yield data


def check_footage(m: dict[str, Any], path: Path) -> None:
    """Step 3: every chunk's hash, then the size and the hash of the whole file."""
    whole = hashlib.sha256()
    with open(path, "rb") as f:
        for c in m["chunks"]:
            h = hashlib.sha256()
            for data in pieces(f, c["size"], path.name):
                h.update(data)
                whole.update(data)
            if h.hexdigest() != c["sha256"]:
                raise Failed(f"{path.name}: chunk {c['index']} (bytes {c['offset']}.."
                             f"{c['offset'] + c['size']}) does not match its SHA-256")
        if f.read(1) or whole.hexdigest() != m["sha256"]:
            raise Failed(f"{path.name}: size or SHA-256 of the whole file does not match")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a bwc-dock preservation copy.")
    parser.add_argument("copy", nargs="?", type=Path, default=Path(__file__).resolve().parent,
                        help="the copy's directory (default: where this script is)")
    parser.add_argument("--dock-key", help="the dock's published public key (base64)")
    parser.add_argument("--camera-key", action="append", default=[], metavar="UID=BASE64",
                        help="a camera's enrolled public key (repeatable)")
    args = parser.parse_args(argv)
    # Labels may hold any language; a legacy console must not turn that into a crash.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    root: Path = args.copy
    try:
        label = load_json(root, "label.json", "LABEL.JSN")
        identity = load_json(root, "dock_identity.json", "DOCKID.JSN")
        dock_key = b64(identity["public_key"])
        if args.dock_key and b64(args.dock_key) != dock_key:
            raise Failed("dock_identity.json holds another key than --dock-key")
        known = (load_json(root, "camera_keys.json", "CAMKEYS.JSN")
                 if find(root, "camera_keys.json", "CAMKEYS.JSN") else {})
        camera_keys = {uid: b64(key) for uid, key in known.items()}
        for pair in args.camera_key:
            uid, _, key = pair.partition("=")
            camera_keys[uid.lower()] = b64(key)
        recordings = label["recordings"]
        print(f"case {label['case_number']} ({label['case_name']}), produced by "
              f"{label['producer']} of {label['producing_unit']} at {label['produced_at']}")
        print(f"dock {identity['dock_id']}, key {identity['public_key']}")
    except Failed as exc:
        print(f"FAILED: {exc}")
        return 2
    except (KeyError, TypeError, AttributeError) as exc:
        print(f"FAILED: not a readable preservation copy (missing or malformed: {exc})")
        return 2
    failures, unchecked = 0, set()
    for rec in recordings:
        name = rec.get("file", "?") if isinstance(rec, dict) else "?"
        try:
            m = load_json(root, rec["manifest"], rec["iso_manifest"])
            if (m.get("recording_id"), m.get("sha256")) != (rec["recording_id"], rec["sha256"]):
                raise Failed(f"{rec['manifest']} is not the manifest of {name}")
            unchecked.update(check_manifest(m, dock_key, camera_keys.get(m["camera_uid"])))
            path = find(root, rec["file"], rec["iso_file"])
            if path is None:
                raise Failed(f"{name}: missing")
            check_footage(m, path)
            print(f"OK      {name}  sha256 {m['sha256']}")
        except (Failed, KeyError, TypeError, ValueError, AttributeError, OSError,
                struct.error) as exc:
            failures += 1
            print(f"FAILED  {name}: {exc}")
    if failures:
        print(f"RESULT: FAILED - {failures} of {len(recordings)} recordings do not verify")
        return 1
    if unchecked:
        why = ("the Python package 'cryptography' is not installed (pip install cryptography)"
               if not HAVE_CRYPTOGRAPHY else "no camera key was given for some camera")
        print(f"RESULT: INCOMPLETE - all {len(recordings)} recordings match their hashes, but "
              f"{' and '.join(sorted(unchecked))} were NOT checked: {why}")
        return 3
    print(f"RESULT: OK - all {len(recordings)} recordings verified, hashes and signatures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
