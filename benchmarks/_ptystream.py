"""Baseline for ``offload.py``: read a file's bytes from a pty, hash, write them, fsync once.

``python benchmarks/_ptystream.py --source FILE --out FILE`` opens a pty (raw mode, like the
emulator's), starts a writer process that streams ``--source`` into the master side as fast as the
line takes it, and reads the slave side here — the same kind of line, in the same direction, as
the agent reading a camera. The reader hashes and writes what it receives (in 1 MiB batches, as a
careful plain implementation would), fsyncs once at the end and prints one JSON line: bytes,
wall seconds, its own CPU seconds (user + system) and the SHA-256. The writer's cost is not
counted, just as the emulator's is not counted for the agent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
import tty

_WRITER = r"""
import os, sys
fd, src = int(sys.argv[1]), sys.argv[2]
f = open(src, "rb", buffering=0)
sys.stdout.buffer.write(b"r"); sys.stdout.flush()  # started up: its start-up is not counted
if sys.stdin.buffer.read(1) != b"g":          # "go": the reader's clock is running
    sys.exit(1)                               # (EOF: the reader is gone)
with f:
    while block := f.read(1 << 20):
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view):]
sys.stdin.buffer.read()                       # keep the master open until the reader is done
"""

BATCH = 1 << 20


def _write_all(fd: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    size = os.path.getsize(args.source)
    master, slave = os.openpty()
    tty.setraw(slave)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(master), args.source],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              pass_fds=(master,))
    os.close(master)  # only the writer holds the master
    assert writer.stdin is not None and writer.stdout is not None
    out = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if writer.stdout.read(1) != b"r":
            raise SystemExit("pty writer failed to start")
        h = hashlib.sha256()
        buf = bytearray()
        got = 0
        cpu0, t0 = _cpu(), time.perf_counter()
        writer.stdin.write(b"g")
        writer.stdin.flush()
        while got < size:
            data = os.read(slave, BATCH)
            if not data:
                raise SystemExit(f"line closed after {got} of {size} bytes")
            got += len(data)
            buf += data
            if len(buf) >= BATCH:
                h.update(buf)
                _write_all(out, buf)
                buf = bytearray()
        if buf:
            h.update(buf)
            _write_all(out, buf)
        os.fsync(out)
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    finally:
        os.close(out)
        writer.stdin.close()
        try:
            writer.wait(10)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait()
        os.close(slave)
    print(json.dumps({"bytes": got, "wall_s": wall, "cpu_s": cpu, "sha256": h.hexdigest()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
