"""Shared plumbing for the end-to-end benchmarks (not run by ``make bench``: leading underscore).

Wires the same pieces as ``agent/demo.py``: emulated cameras (``camsim``) on real ptys, the agent
as a subprocess started with ``python -m agent.cli run --config …``, and, when a benchmark needs
MQTT, a Mosquitto on a free loopback port. Everything is registered on an :class:`ExitStack`, so
every subprocess is stopped and every temp dir removed on any exit path (including SIGTERM, which
is turned into ``SystemExit``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


# -- output ----------------------------------------------------------------------------------

def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout: the benchmark's whole interface."""
    print(json.dumps(record), flush=True)


def note(text: str) -> None:
    """Progress for a human, on stderr (stdout stays JSON lines only)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: other work on a shared machine skews figures."""
    return [round(v, 2) for v in os.getloadavg()]


def make_media(directory: Path, total: int, count: int) -> list[Path]:
    """``count`` recordings of random bytes (``total`` in all) for ``camsim --media-dir``."""
    directory.mkdir()
    paths = []
    each = total // count
    for i in range(count):
        path = directory / f"rec-{i:04d}.mp4"
        size = each if i < count - 1 else total - each * (count - 1)
        with open(path, "wb") as f:
            for _ in range(0, size, 16 * MIB):
                f.write(os.urandom(min(16 * MIB, size - f.tell())))
        paths.append(path)
    return paths


# -- lifecycle -------------------------------------------------------------------------------

@contextmanager
def workspace(prefix: str) -> Iterator[tuple[ExitStack, Path]]:
    """An ExitStack and a temp dir that is removed last; SIGTERM/SIGHUP unwind it too.

    With ``BWC_BENCH_KEEP=1`` in the environment the directory (agent log, journals, emulator
    logs) is kept for a post-mortem and its path printed."""

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with ExitStack() as stack:
            if os.environ.get("BWC_BENCH_KEEP") == "1":
                work = Path(tempfile.mkdtemp(prefix=prefix))
                stack.callback(print, f"workspace kept: {work}", file=sys.stderr)
            else:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
            yield stack, work.resolve()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: only this process (by its own pid)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def suspended(proc: subprocess.Popen[Any]) -> Iterator[None]:
    """SIGSTOP ``proc`` for the block and SIGCONT it on any way out: work set up meanwhile
    (cameras plugged in) reaches it all at once when it resumes."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


def spawn(stack: ExitStack, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - closed by the ExitStack
    stack.callback(out.close)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kwargs.pop("env", {})}
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                            **kwargs)
    stack.callback(stop_process, proc)
    return proc


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU of the process itself (all its threads, no children)."""
    t = proc.cpu_times()
    return float(t.user + t.system)


class RssSampler:
    """Samples one process's RSS every ``interval`` s, attributing samples to the current phase."""

    def __init__(self, proc: psutil.Process, interval: float = 0.01) -> None:
        self.proc = proc
        self.interval = interval
        self.phase = "idle"
        self.peaks: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            phase = self.phase
            self.peaks[phase] = max(self.peaks.get(phase, 0), rss)
            self.last[phase] = rss
            self.counts[phase] = self.counts.get(phase, 0) + 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- mosquitto -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(stack: ExitStack, work: Path) -> int:
    """The demo's throw-away Mosquitto on a free loopback port; its port."""
    from agent.demo import start_broker as demo_broker

    return demo_broker(work, stack)


# -- camsim ----------------------------------------------------------------------------------

class Camera:
    """One ``camsim`` process; ``link`` is the device path the agent watches."""

    def __init__(self, stack: ExitStack, work: Path, name: str, link: Path, args: list[str], *,
                 key: Path | None = None, state_dir: Path | None = None) -> None:
        self.name = name
        self.link = link
        self.key = key or work / f"{name}.pem"
        self.state_dir = state_dir or work / f"{name}-state"
        self.log = work / f"camsim-{name}.log"
        self.log.write_bytes(b"")
        self.proc = spawn(stack, [PY, "-m", "camsim.cli", "--port", str(link), "--key",
                                  str(self.key), "--state-dir", str(self.state_dir),
                                  "--officer-id", f"OF-{name}", *args], self.log)
        self.uid = camera_key(self.key)

    def wait_ready(self, timeout: float = 120.0) -> str:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"camsim {self.name} exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            return "ready port=" in self.log.read_text()

        wait_for(ready, timeout, f"camera {self.name}", interval=0.0005)
        self.uid = self.log.read_text().split(" uid=")[1].split()[0]
        return self.uid

    def wait_link(self, timeout: float, interval: float = 0.0002) -> float:
        """Poll for the device link (the camera appearing); returns ``time.monotonic()`` then."""
        def present() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"camsim {self.name} exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            return os.path.lexists(self.link)

        wait_for(present, timeout, f"camera {self.name}'s link", interval=interval)
        return time.monotonic()

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "state.json").read_text()))

    def stop(self) -> None:
        stop_process(self.proc)


# -- agent -----------------------------------------------------------------------------------

def write_config(work: Path, dev: Path, *, broker: str = "", **extra: Any) -> Path:
    """An agent.toml for a benchmark; ``extra`` keys are written verbatim as TOML values."""
    lines = ['dock_id = "bench-dock"', 'unit = "bench-unit"', f'state_dir = "{work / "state"}"',
             f'serial_ports = ["{dev}/*bwc*"]', f'broker = "{broker}"', 'log_level = "info"']
    if "usb_ids" not in extra:
        lines.append("usb_ids = []")  # serial cameras only unless a benchmark asks for USB
    tables: dict[str, dict[str, Any]] = {"clock": {"require_ntp_sync": False}}
    for key, value in extra.items():
        if isinstance(value, dict):
            tables.setdefault(key, {}).update(value)
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    config = work / "agent.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def camera_key(path: Path) -> str:
    """Create (or load) an emulator device key at ``path``; returns the camera uid it implies,
    so that a camera can be enrolled before it is first plugged in."""
    from camsim.keys import derive_camera_uid, load_or_create_key

    key, _created = load_or_create_key(path)
    return derive_camera_uid(key).hex()


def enroll(config: Path, uid: str, key: Path, officer: str) -> None:
    subprocess.run([PY, "-m", "agent.cli", "enroll", "--config", str(config), "--camera-uid",
                    uid, "--public-key", f"{key}.pub", "--officer", officer], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)


def start_agent(stack: ExitStack, work: Path, config: Path) -> tuple[subprocess.Popen[bytes],
                                                                    psutil.Process, Path]:
    log = work / "agent.log"
    proc = spawn(stack, [PY, "-m", "agent.cli", "run", "--config", str(config)], log)
    wait_for(lambda: proc.poll() is not None or " started (state " in log.read_text(), 30,
             "agent start")
    if proc.poll() is not None:
        raise RuntimeError(f"agent exited with {proc.returncode}: {log.read_text()[-2000:]}")
    return proc, psutil.Process(proc.pid), log


def journal_steps(state_dir: Path) -> list[dict[str, Any]]:
    """Every record of the agent's session journal (append-only JSON lines segments)."""
    out: list[dict[str, Any]] = []
    directory = state_dir / "journal" / "sessions"
    if not directory.is_dir():
        return out
    for segment in sorted(directory.glob("*.jsonl")):
        for line in segment.read_bytes().splitlines():
            with contextlib.suppress(ValueError):  # a line being written right now
                out.append(json.loads(line))
    return out


def wait_unplugged(state_dir: Path, uids: list[str], timeout: float = 30.0) -> None:
    """Wait until the agent's journal shows every camera in ``uids`` unplugged as often as it
    was greeted. Hot-plug notices an unplug within about half a second (two missed scans; the
    session's ``SlotWatch`` in agent/slots.py ends its wait at once, idle or not), but until the
    session has ended and journalled it, its slot (port) is still busy for the next device
    plugged into it."""
    def done() -> bool:
        steps = journal_steps(state_dir)
        for uid in set(uids):
            hellos = sum(1 for s in steps if s["step"] == "hello" and s.get("camera_uid") == uid)
            ends = sum(1 for s in steps if s["step"] == "unplugged"
                       and s.get("camera_uid") == uid)
            if ends < hellos:
                return False
        return True

    wait_for(done, timeout, "the agent to see every camera unplugged", interval=0.05)


# -- MQTT observer ---------------------------------------------------------------------------

class Observer:
    """Subscribes to the dock's topics and timestamps (monotonic) every message it receives.

    With ``ack=True`` it also plays the console: every manifest, event, ledger record and command
    result is acknowledged on the dock's ``…/acks`` topic, so that ``erase_after =
    "acknowledged"`` releases footage and the outbox drains.
    """

    def __init__(self, port: int, topic: str = "bwc/#", *, ack: bool = False) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.ack = ack
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-observer")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        at = time.monotonic()
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        with self.cond:
            self.messages.append((at, msg.topic, payload))
            self.cond.notify_all()
        item_id = {"manifest": payload.get("manifest_id"), "event": payload.get("id"),
                   "ledger": payload.get("id"), "cmd_result": payload.get("id")}.get(
            str(payload.get("type")))
        if self.ack and item_id:
            acks = msg.topic.rsplit("/", 1)[0] + "/acks"
            self.client.publish(acks, json.dumps({"type": "ack", "schema": 1, "ids": [item_id]}),
                                qos=1)

    def wait(self, match: Callable[[float, str, dict[str, Any]], bool], timeout: float,
             what: str, since: float = 0.0) -> tuple[float, str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for item in self.messages:
                    if item[0] >= since and match(*item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
                self.cond.wait(remaining)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
