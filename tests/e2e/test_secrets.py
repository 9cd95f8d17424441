"""No key, nonce or footage byte ever leaves the dock in the clear (issue 6, Security 4).

A real docking — two serial cameras behind pty taps that record what the dock sends them, one
serving a corrupted chunk so a recording is quarantined, and a USB camera — then ``verify``,
``export`` (also of what is not stored), ``keys rotate`` refused while the agent runs and done
once it is stopped, and the agent started again under the new key. Everything the dock wrote
or said is collected: its log (at ``debug``), every MQTT payload on ``bwc/#``, the output of
every CLI command, and every file in its state directory except the key files themselves
(journals, outbox, status, and the footage store: meta.json and the encrypted chunks.dat
too). It is searched for

* the dock's signing key (the raw Ed25519 seed, its PKCS#8 DER, the PEM body),
* both footage wrapping keys (before and after the rotation),
* every recording's data key (unwrapped with the dock's own KeyStore),
* every AUTH challenge nonce the dock sent to the serial cameras (read off the taps),
* 32-byte windows of every recording's plaintext (each chunk's start and middle, the end),

each as raw bytes, hex (either case), base64 and URL-safe base64 at every byte alignment (so
a secret inside a longer encoded blob is found too) and Python bytes-repr bodies.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import threading
import tty
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.store.footage import FootageStore, RecordingInfo
from agent.store.keys import NEXT_WRAP_KEY_FILE, SIGNING_KEY_FILE, WRAP_KEY_FILE, KeyStore
from firmware_protocol.frames import ABS_MAX_PAYLOAD, Frame, FrameDecoder
from firmware_protocol.messages import AuthChallenge, decode_message
from tests.e2e.harness import CHUNK, Camera, Harness, make_media
from tests.helpers import Mosquitto, MqttCollector

K = 1024
KEY_FILES = {SIGNING_KEY_FILE, WRAP_KEY_FILE, NEXT_WRAP_KEY_FILE}


# -------------------------------------------------------------------------------- the tap

class PtyTap:
    """A pty the agent docks at (``link``), relayed both ways to a camera's own pty; keeps
    every byte the dock sent. Holds its slave open, so the agent closing its end is no EIO."""

    def __init__(self, camera_port: Path, link: Path) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.camera = os.open(camera_port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.camera)
        for fd in (self.master, self.camera):
            os.set_blocking(fd, False)
        self.from_dock = bytearray()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.symlink(os.ttyname(self._slave), link)
        self.link = link
        self._thread = threading.Thread(target=self._relay, name=f"tap {link.name}", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        to_camera, to_dock = bytearray(), bytearray()
        while True:
            writers = ([self.camera] if to_camera else []) + ([self.master] if to_dock else [])
            readable, writable, _ = select.select([self._wake_r, self.master, self.camera],
                                                  writers, [])
            if self._wake_r in readable:
                return
            try:
                if self.master in readable:
                    with contextlib.suppress(BlockingIOError):
                        data = os.read(self.master, 1 << 16)
                        with self._lock:
                            self.from_dock += data
                        to_camera += data
                if self.camera in readable:
                    with contextlib.suppress(BlockingIOError):
                        to_dock += os.read(self.camera, 1 << 16)
                if self.camera in writable:
                    with contextlib.suppress(BlockingIOError):
                        del to_camera[:os.write(self.camera, to_camera)]
                if self.master in writable:
                    with contextlib.suppress(BlockingIOError):
                        del to_dock[:os.write(self.master, to_dock)]
            except OSError:
                return  # the camera went away

    def nonces(self) -> list[bytes]:
        """The nonce of every AUTH challenge the dock sent through this tap."""
        with self._lock:
            stream = bytes(self.from_dock)
        decoder = FrameDecoder(ABS_MAX_PAYLOAD)
        decoder.feed(stream)
        found = []
        while (frame := decoder.next()) is not None:
            if isinstance(frame, Frame) and frame.type == AuthChallenge.TYPE:
                msg = decode_message(frame.type, bytes(frame.payload))
                assert isinstance(msg, AuthChallenge)
                found.append(msg.nonce)
        return found

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join()
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self._slave, self.camera, self._wake_r, self._wake_w):
            os.close(fd)


@pytest.fixture
def taps() -> Iterator[list[PtyTap]]:
    made: list[PtyTap] = []
    yield made
    for tap in made:
        tap.close()


def tapped_camera(e2e: Harness, taps: list[PtyTap], name: str, media: dict[str, bytes],
                  *faults: str) -> Camera:
    """A camera the agent reaches only through a tap (its own pty is outside the agent's
    ``serial_ports`` glob)."""
    hidden = e2e.root / "hidden"
    hidden.mkdir(exist_ok=True)
    cam = Camera(e2e.root, hidden, name, media=media, args=(), officer=None)
    e2e.cameras[name] = cam
    cam.start(*faults)
    taps.append(PtyTap(cam.port, e2e.dev / f"usb-tap-{name}-bwc"))
    return cam


# --------------------------------------------------------------------------- the search

def _repr_body(data: bytes, quote: str) -> bytes:
    """The inside of ``repr(data)`` when Python quotes it with ``quote``."""
    out = []
    for byte in data:
        ch = chr(byte)
        if ch in ("\\", quote):
            out.append("\\" + ch)
        elif ch in "\t\n\r":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}[ch])
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out).encode()


def forms(secret: bytes) -> dict[str, bytes]:
    """Every way `secret` could be written into a log, a payload or a file."""
    found = {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode(),
             "repr'": _repr_body(secret, "'"), 'repr"': _repr_body(secret, '"')}
    n = len(secret)
    for k in range(3):  # base64 of a longer blob with `secret` at offset ≡ k (mod 3)
        encoded = base64.b64encode(bytes(k) + secret + bytes(2))
        # only the characters made of secret bits alone
        inner = encoded[-(-8 * k // 6): (8 * (k + n)) // 6]
        found[f"b64+{k}"] = inner
        found[f"b64url+{k}"] = inner.translate(bytes.maketrans(b"+/", b"-_"))
    return found


def search(needles: dict[str, bytes], haystacks: Iterable[tuple[str, bytes]],
           *, binary_only: Collection[str] = ()) -> list[str]:
    """'what (form) in where' for every needle found; `binary_only` haystacks are searched
    for the raw form only (ciphertext: encoded forms cannot occur there by accident)."""
    hits = []
    table = {f"{what} ({form})": text for what, secret in needles.items()
             for form, text in forms(secret).items()}
    for where, hay in haystacks:
        for label, text in table.items():
            if where in binary_only and not label.endswith("(raw)"):
                continue
            if text in hay:
                hits.append(f"{label} in {where}")
    return hits


def windows(name: str, data: bytes) -> dict[str, bytes]:
    """32-byte windows of a recording: each chunk's first bytes and middle, and the end."""
    offsets = sorted({*range(0, len(data) - 32, CHUNK), *range(CHUNK // 2, len(data) - 32, CHUNK),
                      len(data) - 32})
    return {f"footage {name}@{o}": data[o:o + 32] for o in offsets}


def test_search_finds_secrets_in_every_form() -> None:
    secret = os.urandom(32)
    blob = b"a log line " + secret + b" end"
    for k in range(3):
        encoded = base64.b64encode(os.urandom(k + 5) + secret + os.urandom(7))
        assert f"s (b64+{(k + 5) % 3}) in t" in search({"s": secret}, [("t", encoded)])
    assert search({"s": secret}, [("t", blob)]) == ["s (raw) in t"]
    assert search({"s": secret}, [("t", f"key={secret!r}".encode())])
    assert search({"s": secret}, [("t", f"key={bytearray(secret)!r}".encode())])
    assert "s (hex) in t" in search({"s": secret}, [("t", f"k {secret.hex()}".encode())])
    assert search({"s": secret}, [("t", base64.urlsafe_b64encode(secret))])
    assert search({"s": secret}, [("t", base64.b64encode(secret))], binary_only={"t"}) == []


# ---------------------------------------------------------------------------- collecting

def _dock_key_secrets(state: Path) -> dict[str, bytes]:
    pem = (state / SIGNING_KEY_FILE).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    assert base64.b64decode(body) == der
    return {"dock signing key seed": seed, "dock signing key PKCS#8": der,
            "dock signing key PEM body": body}


def _data_keys(state: Path) -> dict[str, bytes]:
    keys = KeyStore(state, create=False)
    out = {}
    for directory in FootageStore(state / "footage", keys).key_holders():
        info = RecordingInfo.load(directory)
        out[f"data key {directory.parent.name}/{directory.name}"] = keys.unwrap(
            info.wrapped_key, info.recording_id)
    return out


def _files(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in KEY_FILES]


# ---------------------------------------------------------------------------------- test

def test_no_key_nonce_or_footage_byte_in_logs_payloads_journals_or_errors(
        e2e: Harness, mosquitto: Mosquitto, taps: list[PtyTap], tmp_path: Path) -> None:
    healthy = tapped_camera(e2e, taps, "healthy",
                            make_media([3 * CHUNK + 5 * K + 3, 70 * K, 40 * K + 1]))
    faulty = tapped_camera(e2e, taps, "faulty", make_media([150 * K, 2 * CHUNK + 7]),
                           "corrupt-chunk=1:1")
    usb = e2e.camera("usb", media=make_media([CHUNK + 9, 33 * K]), usb=True)  # not tapped
    cams = (healthy, faulty, usb)
    agent = e2e.make_agent(mosquitto, usb=True, settings={"log_level": "debug"})
    agent.enroll(*cams)
    outputs: list[tuple[str, bytes]] = []

    def cli(*args: str | Path) -> tuple[int, str]:
        done = agent.cli(*args)
        name = "dock-agent " + " ".join(map(str, args))
        outputs.extend([(f"{name}: stdout", done.stdout.encode()),
                        (f"{name}: stderr", done.stderr.encode())])
        return done.returncode, done.stdout + done.stderr

    with MqttCollector(mosquitto.host, mosquitto.port, "bwc/#") as mqtt:
        console = e2e.console(mosquitto)
        agent.start()
        bad_rid = faulty.rid("clip-01.mp4")
        good = {cam.name: {r: d for r, d in cam.recordings.items() if r != bad_rid}
                for cam in cams}
        for cam in cams:
            e2e.wait(lambda cam=cam: set(console.verified_for(cam)) == set(good[cam.name]),
                     f"verified manifests of {cam.name}")
            e2e.wait(lambda cam=cam: cam.released() == set(good[cam.name]),
                     f"releases of {cam.name}")
        e2e.wait(lambda: console.events_named("integrity_failure", faulty), "integrity_failure")
        assert bad_rid in agent.quarantined()

        # The CLI, while the agent runs: read-only commands work, a rotation is refused.
        rc, text = cli("verify", "--all")
        assert rc == 0 and text.count(" OK") == 6, text
        for cam in cams:
            for rid, data in good[cam.name].items():
                out = tmp_path / f"{rid}.bin"
                assert cli("export", rid, "--out", out)[0] == 0
                assert out.read_bytes() == data
        assert cli("export", bad_rid, "--out", tmp_path / "bad.bin")[0] == 1
        assert cli("verify", bad_rid)[0] == 1
        rc, text = cli("keys", "rotate")
        assert rc == 1 and "the agent is running" in text, text
        assert cli("identity")[0] == 0

        state = agent.state_dir
        old_wrap_key = (state / WRAP_KEY_FILE).read_bytes()
        data_keys = _data_keys(state)
        assert len(data_keys) == 7  # six stored, one quarantined

        # Stopped: the rotation goes through; the agent starts again under the new key.
        assert agent.stop() == 0
        rc, text = cli("keys", "rotate")
        assert rc == 0 and "rewrapped 7 of 7 recording keys" in text, text
        new_wrap_key = (state / WRAP_KEY_FILE).read_bytes()
        assert new_wrap_key != old_wrap_key and _data_keys(state) == data_keys
        agent.start()
        rc, text = cli("verify", "--all")
        assert rc == 0 and text.count(" OK") == 6, text
        for rid, data in good[healthy.name].items():
            out = tmp_path / f"{rid}.again.bin"
            assert cli("export", rid, "--out", out)[0] == 0
            assert out.read_bytes() == data
        assert cli("keys", "show")[0] == 0
        assert agent.stop() == 0
        payloads = [(f"mqtt {m.topic} #{i}", m.payload) for i, m in enumerate(mqtt.messages)]

    nonces = {f"AUTH nonce {tap.link.name} #{i}": n
              for tap in taps for i, n in enumerate(tap.nonces())}
    assert len(nonces) >= 2, "no AUTH challenge captured"
    needles = {**_dock_key_secrets(state), "wrap key (old)": old_wrap_key,
               "wrap key (new)": new_wrap_key, **data_keys, **nonces}
    for cam in cams:
        for rid, data in cam.recordings.items():
            needles.update(windows(rid, data))

    files = _files(agent.dir)  # agent.log, agent.toml, the whole state directory
    assert any(name == "agent.log" for name, _ in files)
    assert any(name.startswith("state/journal/audit/") for name, _ in files)
    assert any(name.startswith("state/journal/sessions/") for name, _ in files)
    assert any(name.startswith("state/footage/quarantine/") for name, _ in files)
    assert len(payloads) > 10 and outputs
    chunk_files = {name for name, _ in files if name.endswith("chunks.dat")}
    haystacks = [*files, *payloads, *outputs]
    # Positive controls: the search does see secrets where they belong.
    exported = (tmp_path / f"{next(iter(good[healthy.name]))}.bin").read_bytes()
    assert search({k: v for k, v in needles.items() if k.startswith("footage")},
                  [("export", exported)])
    assert search({"nonce": next(iter(nonces.values()))}, [("tap", bytes(taps[0].from_dock))])

    assert search(needles, haystacks, binary_only=chunk_files) == []
