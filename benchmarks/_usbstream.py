"""Baseline for ``usb_offload.py``: a plain pyusb loop that receives a camera's recordings.

``python benchmarks/_usbstream.py --bus BUS_DIR --out FILE`` finds the one camera on the
simulated bus through the same pyusb backend as the agent (``camsim.usb_backend``), claims it
and speaks the protocol minimally with ``firmware_protocol``: HELLO, AUTH (the answer is not
checked), one listing, then READ_CHUNK for every chunk of every recording, reading bulk IN 0x81
into one 1 MiB array (``dev.read(0x81, array)``). What arrives is SHA-256-hashed (one hash per
recording), AES-256-GCM-encrypted per chunk (``cryptography``'s ``AESGCM``), written to ``--out``
and fsynced once at the end. No signature, chain or seal checks, no journal, no manifest: the
least work that still moves, hashes, encrypts and stores the same bytes.

Timed (wall and this process's own CPU, user and system) from ``usb.core.find`` to the fsync;
the imports are not. Prints one JSON line: bytes, recordings, wall_s, cpu_s (user_s + sys_s) and
the SHA-256 of each recording (sorted) for comparison with the agent's manifests.
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import usb.core
import usb.util
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from camsim.usb_backend import get_backend
from firmware_protocol import messages as m
from firmware_protocol.connection import (
    NEED_DATA,
    SUPPORTED_VERSIONS,
    Connection,
    EndOfChunk,
    Role,
)

EP_IN, EP_OUT = 0x81, 0x01
READ_SIZE = 1 << 20
TIMEOUT_MS = 10_000


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


class Dock:
    """The minimal dock side: one request at a time, events pulled from bulk IN reads."""

    def __init__(self, dev: Any, max_payload: int) -> None:
        self.dev = dev
        self.conn = Connection(Role.DOCK, max_payload=max_payload)
        self.buf = array.array("B", bytes(READ_SIZE))
        self.view = memoryview(self.buf)

    def send(self, msg: m.Message) -> None:
        self.dev.write(EP_OUT, self.conn.send(msg), TIMEOUT_MS)

    def event(self) -> object:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                n = self.dev.read(EP_IN, self.buf, TIMEOUT_MS)
                # Read in place until the next NEED_DATA, i.e. before this buffer is reused.
                conn.receive_data(self.view[:n])
                continue
            if not isinstance(event, m.Message | EndOfChunk):
                raise SystemExit(f"unexpected {event!r} from the camera")
            return event

    def request(self, msg: m.Message) -> object:
        self.send(msg)
        return self.event()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bus", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--max-payload", type=int, default=(1 << 20) + 4)
    args = p.parse_args()
    backend = get_backend(args.bus)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    out = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    digests: list[str] = []
    got = 0
    try:
        cpu0, t0 = _cpu(), time.perf_counter()
        dev = usb.core.find(backend=backend, idVendor=0x1D6B, idProduct=0x0104)
        if dev is None:
            raise SystemExit(f"no camera on {args.bus}")
        dev.set_configuration()
        usb.util.claim_interface(dev, 0)
        dock = Dock(dev, args.max_payload)
        identity = dock.request(m.Hello(SUPPORTED_VERSIONS, args.max_payload))
        assert isinstance(identity, m.Identity), identity
        assert isinstance(dock.request(m.AuthChallenge(os.urandom(32))), m.AuthResponse)
        listing = dock.request(m.ListRecordings(0, 1000))
        assert isinstance(listing, m.RecordingList) and listing.total == len(listing.entries)
        for n, info in enumerate(listing.entries):
            whole = hashlib.sha256()
            for index in range(info.chunk_count):
                header = dock.request(m.ReadChunk(info.recording_id, index))
                assert isinstance(header, m.ChunkHeader), header
                parts: list[bytes | memoryview] = []
                while not isinstance(event := dock.event(), EndOfChunk):
                    assert isinstance(event, m.ChunkData), event
                    whole.update(event.data)
                    parts.append(event.data)
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                nonce = n.to_bytes(4, "big") + index.to_bytes(8, "big")
                sealed = memoryview(aead.encrypt(nonce, data, None))
                while sealed:
                    sealed = sealed[os.write(out, sealed):]
                got += len(data)
            digests.append(whole.hexdigest())
        os.fsync(out)
        wall, (user1, sys1) = time.perf_counter() - t0, _cpu()
        usb.util.release_interface(dev, 0)
        usb.util.dispose_resources(dev)
    finally:
        os.close(out)
    user, system = user1 - cpu0[0], sys1 - cpu0[1]
    print(json.dumps({"bytes": got, "recordings": len(digests), "wall_s": wall,
                      "cpu_s": user + system, "user_s": user, "sys_s": system,
                      "sha256": sorted(digests)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
