"""bwc-console as the operator runs it: subprocesses of the real CLI, output in files."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bwc_console.store import Store
from tests.e2e.harness import PY, REPO, START_DEADLINE_S, Camera, wait_until

__all__ = ["IngestProcess", "camera_trust", "run_console"]


def camera_trust(*cameras: Camera) -> dict[str, str]:
    """Trust-file entries for emulated cameras: uid → base64 of the raw public key."""
    return {cam.uid_hex: base64.b64encode(cam.public_key.public_bytes_raw()).decode()
            for cam in cameras}


def run_console(*args: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "bwc_console.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, check=False,
                          stdin=subprocess.DEVNULL)


class IngestProcess:
    """``bwc-console ingest`` with its store and trust file under ``root``; ``run`` numbers
    restarts (each run has its own output files, the store is shared)."""

    def __init__(self, root: Path, broker: str, trust: dict[str, Any], *, run: int = 0) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.store_dir = root / "store"
        self.trust_path = root / "trust.json"
        self.trust_path.write_text(json.dumps(trust))
        self.out_path = root / f"ingest-{run}.out"
        self.log_path = root / f"ingest-{run}.log"
        with self.out_path.open("wb") as out, self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "bwc_console.cli", "ingest", "--broker", broker, "--store",
                 str(self.store_dir), "--trust", str(self.trust_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=log, cwd=REPO,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until(self._ready, "bwc-console ingest ready", START_DEADLINE_S, self.diagnostics)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"ingest exited {self.proc.returncode}\n{self.diagnostics()}")
        return "ingest ready" in self.out_path.read_text()

    def lines(self) -> list[str]:
        return self.out_path.read_text(errors="replace").splitlines()

    def store(self) -> Store:
        """A reader on the store (SQLite lets it read while ingest writes)."""
        return Store(self.store_dir)

    def rejected(self) -> list[dict[str, Any]]:
        d = self.store_dir / "rejected"
        return [json.loads(p.read_text()) for p in sorted(d.rglob("*.json"))] \
            if d.is_dir() else []

    def alerts(self) -> list[dict[str, Any]]:
        d = self.store_dir / "alerts"
        return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] \
            if d.is_dir() else []

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)

    def diagnostics(self) -> str:
        tail: Sequence[str] = self.log_path.read_text(errors="replace").splitlines()[-30:]
        return f"--- ingest stdout\n{self.out_path.read_text(errors='replace')[-3000:]}\n" \
               f"--- ingest log\n" + "\n".join(tail)
