"""A kill campaign: start the agent, ``kill -9`` it at a chosen point, (optionally cut the power),
check that no camera released anything the dock could lose, restart — many times over.

Kill points come three ways, in turn, so that every named phase is hit and random points too:

* ``syscall``: the shim in the agent sends itself SIGKILL right before or after the n-th system
  call of a kind on a path of a phase (a chunk's write or fsync; the manifest/seal writes or the
  rename that stores a recording; a TinyDB ``state.json`` replacement; an outbox journal write);
* ``marker``: the test kills the agent as soon as a session step or log line appears in its log;
* ``delay``: the test kills the agent after a random delay.

Each kill is classified by what the agent was doing (the last system call under its state
directory, from the shim's activity record), and the counts per phase go into the summary.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.harness import Camera, Harness, make_media
from tests.faults.harness import (
    FaultAgent,
    Invariants,
    Summary,
    classify_phase,
    make_fault_agent,
    power_cut,
)
from tests.helpers import Mosquitto

__all__ = ["SYSCALL_TARGETS", "Campaign"]

K = 1024
_RID = r"[0-9a-f]{32}"
# phase -> (category, path regex relative to the state directory, largest n)
SYSCALL_TARGETS: dict[str, list[tuple[str, str, int]]] = {
    "offload": [("write", rf"^footage/partial/{_RID}/chunks\.dat$", 6),
                ("fsync", rf"^footage/partial/{_RID}/chunks\.dat$", 6),
                ("rename", rf"^footage/partial/{_RID}/meta\.json$", 2)],
    "finalisation": [("fsync", rf"^footage/partial/{_RID}/\.manifest\.json\..*\.tmp$", 2),
                     ("rename", rf"^footage/partial/{_RID}/manifest\.json$", 2),
                     ("rename", rf"^footage/partial/{_RID}/seal\.json$", 2),
                     ("rename", rf"^footage/recordings/{_RID}$", 2),
                     ("fsync", r"^footage/recordings$", 2)],
    "tinydb": [("write", r"^\.state\.json\..*\.tmp$", 3),
               ("fsync", r"^\.state\.json\..*\.tmp$", 3),
               ("rename", r"^state\.json$", 3)],
    "outbox": [("write", r"^outbox/items/", 6),
               ("fsync", r"^outbox/items/", 6),
               ("write", r"^outbox/done/", 4),
               ("fsync", r"^outbox/done/", 4)],
}
MARKERS = [r"session=\S+ offload_start", r"recording [0-9a-f]+ stored", r"session=\S+ stored",
           r"acknowledged \d+ of", r"session=\S+ released", r"session=\S+ readiness",
           r"session=\S+ authenticated"]
_SCHEDULE = ["syscall:offload", "syscall:finalisation", "syscall:tinydb", "syscall:outbox",
             "delay", "marker"]


@dataclass
class Campaign:
    h: Harness
    agent: FaultAgent
    inv: Invariants
    summary: Summary
    rng: random.Random
    power_loss: bool = False
    pending_floor: int = 3  # keep at least this many recordings to offload on each camera
    how: Counter[str] = field(default_factory=Counter)
    log: list[dict[str, Any]] = field(default_factory=list)
    _media_seq: int = 0

    @property
    def cameras(self) -> list[Camera]:
        return self.inv.cameras

    def top_up(self) -> None:
        """Give the cameras more recordings (a replug with new files) so that every phase
        keeps happening, however many kills there are. Only while the agent is dead."""
        stored = self.agent.stored_ids()
        stale = [c for c in self.cameras
                 if len(set(c.recordings) - c.released() - stored) < self.pending_floor]
        for cam in stale:
            cam.stop()
            assert cam.media_dir is not None
            for _ in range(4):
                self._media_seq += 1
                name = f"clip-{self._media_seq + 1000:05d}.mp4"
                data = os.urandom(self.rng.randrange(1 * K, 260 * K))
                (cam.media_dir / name).write_bytes(data)
                cam.media[name] = data
        self.h.start_cameras(stale)

    def kill_once(self, index: int) -> str:
        """One cycle: start, kill at the scheduled kind of point, check; returns the phase."""
        kind = _SCHEDULE[index % len(_SCHEDULE)]
        shim: dict[str, Any] = {"activity": True}
        if self.power_loss:
            shim["shadow"] = True
        target: tuple[str, str, str] | None = None
        marker = re.compile(self.rng.choice(MARKERS))
        if kind.startswith("syscall:"):
            phase = kind.split(":", 1)[1]
            cat, path, most = self.rng.choice(SYSCALL_TARGETS[phase])
            target = (phase, cat, path)
            shim["kill"] = {"cat": cat, "path": path, "nth": self.rng.randint(1, most),
                            "when": self.rng.choice(["before", "after"]), "phase": phase}
        began = time.monotonic()
        self.agent.start(shim=shim, killed_ok=True)
        fired_by = kind
        if target is not None:
            if not self.agent.wait_killed(10.0):
                # The trigger did not come (nothing of that kind left to do): kill anyway.
                self.agent.kill9()
                fired_by = "delay"
        elif kind == "marker":
            if not self._kill_on_marker(marker, 8.0):
                fired_by = "delay"
        else:
            threading.Event().wait(self.rng.uniform(0.0, 2.5))  # the fault's timing
            self.agent.kill9()
        phase = self._phase(target if fired_by == kind else None)
        self.how[fired_by] += 1
        entry: dict[str, Any] = {"kill": index, "how": fired_by, "phase": phase,
                                 "marker": marker.pattern if kind == "marker" else None,
                                 "target": shim.get("kill"), "t": time.monotonic() - began}
        durable = None
        if self.power_loss:
            entry["power_loss"] = power_cut(self.agent, self.rng)
            durable = self.agent.stored_ids()
        problems = self.inv.check_release_safety(f"kill {index} ({fired_by}, {phase})",
                                                 durable=durable)
        self.summary.run(phase, ok=not problems)
        self.log.append(entry)
        self.top_up()
        return phase

    def _kill_on_marker(self, marker: re.Pattern[str], timeout: float) -> bool:
        run = len(self.agent.procs) - 1

        def seen() -> bool:
            if not self.agent.running:
                raise AssertionError(f"agent died by itself:\n{self.agent.log_tail()}")
            return bool(marker.search(self.agent.run_log(run)))
        try:
            self.h.wait(seen, f"log marker {marker.pattern}", timeout, poll=0.002)
        except AssertionError:
            if not self.agent.running:
                raise
            self.agent.kill9()
            return False
        self.agent.kill9()
        return True

    def _phase(self, target: tuple[str, str, str] | None) -> str:
        """The phase the kill landed in: the shim's target, else the last call's path."""
        if target is not None:
            return target[0]
        _counts, calls = self.agent.activity()
        if not calls:
            return "startup"
        in_flight = [c for c in calls if not c["returned"]]
        last = in_flight[-1] if in_flight else calls[-1]
        return classify_phase(last["path"])


def run_campaign(e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary],
                 kills: int, *, power_loss: bool, name: str) -> None:
    """Start two cameras and the agent, kill it ``kills`` times (cutting the power after each
    kill with ``power_loss``), then let it finish and check every invariant."""
    seed = int(os.environ.get("BWC_FAULTS_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    cams = [e2e.camera(f"cam{i}", media=make_media(
        [rng.randrange(1 * K, 260 * K) for _ in range(6)], prefix=f"c{i}"), start=False)
        for i in range(2)]
    e2e.start_cameras(cams)
    agent = make_fault_agent(e2e, mosquitto.url)
    agent.enroll(*cams)
    console = e2e.console(mosquitto)
    inv = Invariants(e2e, console, cams)
    s = summary(name)
    s.extra["seed"] = seed
    campaign = Campaign(e2e, agent, inv, s, rng, power_loss=power_loss)
    try:
        for index in range(kills):
            campaign.kill_once(index)
    finally:
        (e2e.root / "campaign.json").write_text(json.dumps(campaign.log, indent=1))
    s.extra["kill_points"] = dict(campaign.how)
    if power_loss:
        for key in ("lost_files", "lost_bytes", "torn_tails"):
            s.extra[f"power_loss_{key}"] = sum(e["power_loss"][key] for e in campaign.log)
        s.extra["power_loss_cycles_losing_data"] = sum(
            1 for e in campaign.log if e["power_loss"]["lost_bytes"])

    # The last run: no fault. Everything completes; then the final invariants.
    agent.start()
    inv.wait_complete(f"every recording stored, published, acknowledged and released "
                      f"(seed {seed})", timeout=240)
    assert agent.stop() == 0
    inv.check_final()
    s.extra["recordings"] = len(inv.expected())
    snap = console.snapshot()
    unexpected = [e["event"] for e in snap["events"]
                  if e["event"] in ("integrity_failure", "session_crashed")]
    if unexpected:
        inv.problems.append(f"unexpected events after kills: {unexpected}")
    if inv.problems:
        s.passed = min(s.passed, s.runs - 1)
    inv.assert_ok()
    missing = {"offload", "finalisation", "tinydb", "outbox"} - set(s.phases)
    assert not missing, f"phases never hit: {missing} ({dict(s.phases)}, seed {seed})"
