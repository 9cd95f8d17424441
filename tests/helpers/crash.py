"""Crash a writer at a random-ish point: run a script that prints the count of what it has
acknowledged (made durable) after each step, and ``kill -9`` it once it got far enough."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

__all__ = ["kill_writer_after"]


def kill_writer_after(script: str, *args: str, acked_at_least: int) -> int:
    """Run ``python -c script ARGS``; SIGKILL it once a printed count reaches
    ``acked_at_least``; return the last count it printed (all of those must survive)."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    acked = -1
    try:
        for line in proc.stdout:
            acked = int(line)
            if acked >= acked_at_least:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"writer exited by itself with {proc.returncode}"
    return acked
