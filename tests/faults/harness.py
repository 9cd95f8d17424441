"""Machinery of the fault-injection suite, on top of the end-to-end harness (tests/e2e).

* :class:`FaultAgent` — the real agent subprocess, optionally with the OS-boundary shim
  (``tests/faults/shim``) loaded into it: a power-loss shadow, an injected I/O error, a
  ``kill -9`` at a chosen system call, an activity record;
* :func:`power_cut` — after the agent died, replace its state directory by what the shadow says
  survived the power loss;
* :class:`Invariants` — the four promises every scenario checks (see README.md);
* :class:`Summary` — the JSON line each scenario prints (runs, passed, phases).

Nothing of the project is mocked: the agent, the cameras (camsim), the broker (Mosquitto) and
the console are real processes and connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    PY,
    REPO,
    START_DEADLINE_S,
    STOP_DEADLINE_S,
    Agent,
    Camera,
    Console,
    Harness,
    sha256_hex,
    wait_until,
)
from tests.faults.shim.bwc_fault_shim import materialize, read_activity

__all__ = [
    "SHIM_DIR",
    "FaultAgent",
    "Invariants",
    "Summary",
    "classify_phase",
    "power_cut",
]

SHIM_DIR = Path(__file__).resolve().parent / "shim"

# What the agent was doing, from the path of a system call (relative to the state directory).
_PHASES: list[tuple[str, re.Pattern[str]]] = [
    ("finalisation", re.compile(r"^footage/(partial/[0-9a-f]+/(\.?(seal|manifest)\.json.*)"
                                r"|recordings(/[0-9a-f]+)?)$")),
    ("offload", re.compile(r"^footage/partial(/[0-9a-f]+(/(chunks\.dat|\.?meta\.json.*))?)?$")),
    ("tinydb", re.compile(r"^\.?(state|compliance|command_nonces)\.json")),
    ("outbox", re.compile(r"^outbox(/|$)")),
]


def classify_phase(path: str) -> str:
    for phase, pattern in _PHASES:
        if pattern.search(path):
            return phase
    return "other"


class FaultAgent(Agent):
    """The agent subprocess; ``start(shim={...})`` loads the fault shim into it."""

    def __init__(self, root: Path, dev_dir: Path, **kwargs: Any) -> None:
        super().__init__(root, dev_dir, **kwargs)
        self.run_dirs: list[Path | None] = []
        self.log_offsets: list[int] = []  # where each run's log starts in agent.log

    @property
    def run_dir(self) -> Path | None:
        return self.run_dirs[-1] if self.run_dirs else None

    def start(self, shim: Mapping[str, Any] | None = None, *,  # type: ignore[override]
              wait: bool = True, killed_ok: bool = False) -> FaultAgent:
        """Start ``dock-agent run``. ``shim``: keys of the shim configuration besides the
        state directory (``shadow: True``, ``fault: {...}``, ``kill: {...}``,
        ``activity: True``, ``clock_unsynced: True``). With ``killed_ok`` a shim ``kill``
        that fires during start-up ends the wait too."""
        if self.running:
            raise RuntimeError("agent already running")
        run = len(self.procs)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("BWC_FAULT_SHIM", None)
        run_dir: Path | None = None
        if shim is not None:
            run_dir = self.dir / f"run-{run}"
            run_dir.mkdir()
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            cfg: dict[str, Any] = {"root": str(self.state_dir),
                                   "events": str(run_dir / "events.jsonl")}
            for key, value in shim.items():
                if key in ("shadow", "activity"):
                    if value:
                        cfg[key] = str(run_dir / key)
                else:
                    cfg[key] = value
            (run_dir / "shim.json").write_text(json.dumps(cfg))
            env["PYTHONPATH"] = os.pathsep.join(
                [str(SHIM_DIR), *filter(None, [env.get("PYTHONPATH")])])
            env["BWC_FAULT_SHIM"] = str(run_dir / "shim.json")
        self.run_dirs.append(run_dir)
        with self.log_path.open("ab") as log:
            log.write(f"==== harness: agent run {run} shim={json.dumps(shim)}\n".encode())
        offset = self.log_path.stat().st_size
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [PY, "-m", "agent.cli", "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                start_new_session=True, env=env)
        self.procs.append(proc)
        self.log_offsets.append(offset)
        if not wait:
            return self

        def started() -> bool:
            if proc.poll() is not None:
                if killed_ok and proc.returncode == -signal.SIGKILL:
                    return True
                raise AssertionError(f"agent exited with {proc.returncode}:\n"
                                     f"{self.log_tail()}")
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return b" started (state " in f.read()
        wait_until(started, "agent start-up", START_DEADLINE_S)
        return self

    def run_log(self, run: int | None = None) -> str:
        """The log of one run (default: the latest)."""
        index = len(self.procs) - 1 if run is None else run
        with self.log_path.open("rb") as f:
            f.seek(self.log_offsets[index])
            data = f.read()
        if index + 1 < len(self.log_offsets):
            data = data[: self.log_offsets[index + 1] - self.log_offsets[index]]
        return data.decode(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def shim_events(self, run: int | None = None) -> list[dict[str, Any]]:
        run_dir = self.run_dirs[-1 if run is None else run]
        if run_dir is None:
            return []
        path = run_dir / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def activity(self, run: int | None = None) -> tuple[dict[str, int], list[dict[str, Any]]]:
        run_dir = self.run_dirs[-1 if run is None else run]
        if run_dir is None or not (run_dir / "activity").exists():
            return {}, []
        return read_activity(str(run_dir / "activity"))

    def wait_killed(self, timeout: float) -> bool:
        """Wait for the shim's kill (True) — or for ``timeout`` to pass (False)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if code != -signal.SIGKILL:
            raise AssertionError(f"agent exited with {code}, not by SIGKILL:\n{self.log_tail()}")
        return True

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_DEADLINE_S)

    def status_json(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def manifest_ids(self) -> dict[str, str]:
        """recording_id → manifest_id of every stored recording (its manifest.json)."""
        out: dict[str, str] = {}
        base = self.state_dir / "footage" / "recordings"
        if base.is_dir():
            for rec in base.iterdir():
                with contextlib.suppress(FileNotFoundError, ValueError):
                    out[rec.name] = json.loads((rec / "manifest.json").read_text())["manifest_id"]
        return out


def make_fault_agent(h: Harness, broker_url: str, **kwargs: Any) -> FaultAgent:
    """A :class:`FaultAgent` owned by the harness (killed at teardown)."""
    assert h.agent is None
    agent = FaultAgent(h.root, h.dev, broker=broker_url, **kwargs)
    h.agent = agent
    return agent


_APPEND_ONLY = re.compile(r"(\.jsonl|/chunks\.dat)$")


def power_cut(agent: FaultAgent, rng: random.Random | None = None) -> dict[str, Any]:
    """The agent is dead (``kill -9``): replace its state directory by the durable state the
    shim's shadow recorded, as after a power loss; return what was lost (for the record).

    With ``rng``, each append-only file (journal segments, ``chunks.dat``) whose unsynced tail
    was dropped may get a random prefix of that tail back, as when part of it had reached the
    disk before the power went: the torn tails the agent must cut off on start-up."""
    assert not agent.running, "cut the power of a dead agent only"
    run_dir = agent.run_dir
    assert run_dir is not None and (run_dir / "shadow" / "root").exists(), "no shadow"
    rebuilt = agent.dir / "state.after-power-loss"
    if rebuilt.exists():
        shutil.rmtree(rebuilt)
    materialize(str(run_dir / "shadow"), str(rebuilt))
    before = _tree_sizes(agent.state_dir)
    after = _tree_sizes(rebuilt)
    torn = 0
    if rng is not None:
        for rel in sorted(before.keys() & after.keys()):
            if not (_APPEND_ONLY.search(rel) and before[rel] > after[rel]
                    and rng.random() < 0.5):
                continue
            real, kept = agent.state_dir / rel, rebuilt / rel
            durable = kept.read_bytes()
            with real.open("rb") as f:
                if f.read(len(durable)) != durable:
                    continue  # not a pure append since the last fsync
                tail = f.read()
            with kept.open("ab") as f:
                f.write(tail[: rng.randrange(1, len(tail) + 1)])
            torn += 1
        after = _tree_sizes(rebuilt)
    lost = {p: s for p, s in before.items() if p not in after}
    shrunk = {p: (before[p], after[p]) for p in before.keys() & after.keys()
              if after[p] != before[p]}
    shutil.rmtree(agent.state_dir)
    rebuilt.rename(agent.state_dir)
    shutil.rmtree(run_dir / "shadow")  # the next run snapshots the new state afresh
    return {"lost_files": len(lost), "changed_files": len(shrunk), "torn_tails": torn,
            "lost_bytes": sum(lost.values()) + sum(b - a for b, a in shrunk.values() if b > a)}


def _tree_sizes(root: Path) -> dict[str, int]:
    sizes = {}
    for here, _dirs, files in os.walk(root):
        for name in files:
            path = Path(here) / name
            with contextlib.suppress(FileNotFoundError):
                sizes[str(path.relative_to(root))] = path.stat().st_size
    return sizes


# ------------------------------------------------------------------------------ invariants

@dataclass
class Invariants:
    """The promises of issue 6, checked against the real processes' evidence:

    1. every chunk acknowledged as stored is present and verifies (``dock-agent verify``, the
       manifest's SHA-256 against the original bytes);
    2. no chunk is stored twice (verify refuses extra records; one ``stored`` step per
       recording; no recording both partial and stored);
    3. every manifest and event reaches the broker exactly once after de-duplication by id
       (all copies of an id identical, one manifest per recording, the outbox drained and
       every item acknowledged by the console); so does each stored recording's compliance
       record (one ``recording`` record on the ledger per recording);
    4. no camera is told to release a recording the dock could lose (released ⊆ durably stored,
       and with ``erase_after = "acknowledged"`` ⊆ acknowledged by the console).
    """

    h: Harness
    console: Console
    cameras: list[Camera]
    problems: list[str] = field(default_factory=list)

    @property
    def agent(self) -> FaultAgent:
        assert isinstance(self.h.agent, FaultAgent)
        return self.h.agent

    def expected(self) -> dict[str, bytes]:
        return {rid: data for cam in self.cameras for rid, data in cam.recordings.items()}

    def check_release_safety(self, where: str, *,
                             durable: Iterable[str] | None = None) -> list[str]:
        """Invariant 4 now, with the agent dead or alive: every recording any camera released
        is stored in the dock's durable state (``durable``: ids the caller knows survive, by
        default what ``footage/recordings/`` holds) and was acknowledged by the console."""
        stored = set(durable) if durable is not None else self.agent.stored_ids()
        acked_rids = self._acked_rids()
        found = []
        for cam in self.cameras:
            released = cam.released()
            if lost := released - stored:
                found.append(f"{where}: {cam.name} released {sorted(lost)} not durably stored")
            if unacked := released - acked_rids:
                found.append(f"{where}: {cam.name} released {sorted(unacked)} unacknowledged")
        partial = set(self.agent.partials())
        if both := partial & stored:
            found.append(f"{where}: {sorted(both)} both partial and stored")
        self.problems += found
        return found

    def _acked_rids(self) -> set[str]:
        snap = self.console.snapshot()
        with self.console._cond:
            acked = set(self.console.acked)
        return {m["recording_id"] for mid, m in snap["verified"].items() if mid in acked}

    def wait_complete(self, what: str, timeout: float = 180.0) -> None:
        """Everything offloaded, published (ledger records too), acknowledged and released;
        outbox drained."""
        expected = self.expected()

        def done() -> bool:
            snap = self.console.snapshot()
            verified = {m["recording_id"] for m in snap["verified"].values()}
            if not set(expected) <= verified:
                return False
            # The compliance loop moves a stored recording's ledger record into the outbox a
            # moment after the manifest: an empty outbox alone does not mean it was sent.
            recorded = {e["recording_id"] for e in self.console.ledger_entries(kind="recording")}
            if not set(expected) <= recorded:
                return False
            if any(cam.released() != set(cam.recordings) for cam in self.cameras):
                return False
            status = self.agent.state_dir / "status.json"
            try:
                depth = json.loads(status.read_text())["health"].get("outbox_depth")
            except (FileNotFoundError, ValueError, KeyError):
                return False
            return depth == 0

        self.h.wait(done, what, timeout)

    def check_final(self, *, verify: bool = True) -> None:
        """Invariants 1 to 4 on the final state (the agent may be running or stopped)."""
        agent, expected = self.agent, self.expected()
        snap = self.console.snapshot()
        p = self.problems
        if snap["rejected"]:
            p.append(f"console rejected manifests: {snap['rejected'][:3]}")
        # 3: manifests, one per recording, every copy of an id identical.
        copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for m in snap["manifest_msgs"]:
            copies[m["manifest_id"]].append(m)
        for mid, group in copies.items():
            if any(c != group[0] for c in group):
                p.append(f"manifest {mid}: copies differ")
        per_rid = Counter(group[0]["recording_id"] for group in copies.values())
        if twice := {rid: n for rid, n in per_rid.items() if n > 1}:
            p.append(f"recordings with more than one manifest id: {twice}")
        if missing := set(expected) - set(per_rid):
            p.append(f"recordings never published: {sorted(missing)[:5]} ({len(missing)})")
        for group in copies.values():
            rid = group[0]["recording_id"]
            if rid in expected and group[0]["sha256"] != sha256_hex(expected[rid]):
                p.append(f"manifest of {rid} does not match the original bytes")
        events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in snap["events"]:
            events[e["id"]].append(e)
        for eid, group in events.items():
            if any(c != group[0] for c in group):
                p.append(f"event {eid}: copies differ")
        ledger: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for msg in snap["ledger"]:
            ledger[msg["id"]].append(msg)
        for lid, group in ledger.items():
            if any(c != group[0] for c in group):
                p.append(f"ledger record {lid}: copies differ")
        recorded = Counter(e["recording_id"] for e in self.console.ledger_entries(kind="recording"))
        if unrecorded := set(expected) - set(recorded):
            p.append(f"stored recordings without a 'recording' record on the ledger: "
                     f"{sorted(unrecorded)[:5]} ({len(unrecorded)})")
        if twice_recorded := {rid: n for rid, n in recorded.items() if n > 1}:
            p.append(f"recordings with more than one 'recording' record: {twice_recorded}")
        # 1, 2: the store.
        stored = agent.stored_ids()
        if stored != set(expected):
            p.append(f"stored {len(stored)} recordings, expected {len(expected)}: "
                     f"missing {sorted(set(expected) - stored)[:5]}")
        if agent.partials():
            p.append(f"partials left: {sorted(agent.partials())[:5]}")
        if agent.quarantined():
            p.append(f"quarantined: {sorted(agent.quarantined())}")
        steps = Counter(s["recording_id"] for s in agent.steps("stored"))
        if twice_steps := {rid: n for rid, n in steps.items() if n > 1}:
            p.append(f"recordings stored twice (journal): {twice_steps}")
        if verify:
            done = agent.cli("verify", "--all", timeout=600)
            lines = done.stdout.splitlines()
            bad = [line for line in lines if not line.endswith(" OK")]
            if done.returncode != 0 or bad or len(lines) != len(expected):
                p.append(f"verify --all exited {done.returncode}: {bad[:5]} {done.stderr[-500:]}")
        # 4: releases.
        self.check_release_safety("final")

    def assert_ok(self) -> None:
        assert not self.problems, "invariants violated:\n" + "\n".join(self.problems[:40])


# -------------------------------------------------------------------------------- summaries

@dataclass
class Summary:
    """One JSON line per scenario: what ran, what passed, and where the faults landed."""

    scenario: str
    runs: int = 0
    passed: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def run(self, phase: str | None = None, ok: bool = True) -> None:
        self.runs += 1
        self.passed += int(ok)
        if phase is not None:
            self.phases[phase] += 1

    def line(self) -> str:
        doc = {"scenario": self.scenario, "runs": self.runs, "passed": self.passed,
               "phases": dict(sorted(self.phases.items())), **self.extra,
               "seconds": round(time.monotonic() - self.started, 1)}
        return "FAULTS-SUMMARY " + json.dumps(doc, sort_keys=False)
