"""Scenario 3: I/O errors — EIO, ENOSPC, EROFS — injected at the N-th write, fsync or rename
under the agent's state directory, N running over the whole range of calls one docking makes
(from the camera's docking to its recording stored, published, acknowledged and released).

EIO and ENOSPC hit one call (a transient error); EROFS is sticky: from the N-th call on every
mutating call fails, as on a filesystem the kernel remounted read-only.

Invariant of every run: the camera is never told to release the recording unless it is durably
stored, verifies and the console acknowledged it; a fault that breaks the docking raises an
alert (a ``session_crashed`` event naming the error, delivered once the dock can write again);
and once the fault is gone the recording completes — at the next docking (the camera is
re-plugged), or after a restart of the agent where the fault left it unable to continue (an
fsync failure is fatal for the file it hit; a read-only filesystem needs the agent restarted,
as systemd does). At the end every recording is stored once and verifies, and every manifest
and event reached the console once after de-duplication by id.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.harness import Camera, Console, Harness, make_media
from tests.faults.harness import (
    FaultAgent,
    Invariants,
    Summary,
    classify_phase,
    make_fault_agent,
    power_cut,
)
from tests.helpers import Mosquitto

K = 1024
CATEGORIES = ("write", "fsync", "rename")
STICKY = {"EIO": False, "ENOSPC": False, "EROFS": True}
_REACTION_S = 60.0  # a lost ack is re-sent after the publisher's 30 s: allow for one
_SETTINGS = {"status_interval_s": 1}


@dataclass
class IoRig:
    h: Harness
    agent: FaultAgent
    console: Console
    cam: Camera
    inv: Invariants
    rng: random.Random
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    _n: int = 0

    def new_recording(self) -> str:
        """Unplug the camera and give it one new recording (three chunks and a bit)."""
        if self.cam.running:
            self.cam.stop()
        assert self.cam.media_dir is not None
        self._n += 1
        name = f"io-{self._n:04d}.mp4"
        data = os.urandom(3 * 64 * K + self.rng.randrange(1, 32 * K))
        (self.cam.media_dir / name).write_bytes(data)
        self.cam.media[name] = data
        return self.cam.rid(name)

    def complete(self, rid: str) -> bool:
        verified = {m["recording_id"] for m in self.console.snapshot()["verified"].values()}
        return rid in verified and rid in self.cam.released()

    def crashes(self) -> int:
        return self.agent.log_text().count("session crashed")

    def dock(self, rid: str, shim: dict[str, Any] | None, arm: str | None) -> None:
        if not self.agent.running:
            self.agent.start(shim=shim)
        if arm is not None:
            open(arm, "w").close()  # the shim counts from here on
        self.cam.start()

    def calibrate(self) -> dict[str, int]:
        """Clean dockings with the counters on: how many calls of each kind one makes (the
        second docking: the first also creates the camera's files and directories)."""
        counts: dict[str, int] = {}
        for _ in range(2):
            rid = self.new_recording()
            if self.agent.running:
                self.agent.stop()
            self.agent.start(shim={"activity": True})
            before, _ = self.agent.activity()
            self.cam.start()
            self.h.wait(lambda rid=rid: self.complete(rid), "a calibration docking")
            self.h.wait(self.outbox_empty, "the outbox drained after a calibration docking")
            after, _ = self.agent.activity()
            counts = {c: after[c] - before[c] for c in CATEGORIES}
        return counts

    def outbox_empty(self) -> bool:
        try:
            doc = json.loads((self.agent.state_dir / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return False
        return bool(doc.get("health", {}).get("outbox_depth") == 0)

    def run(self, category: str, nth: int, errno: str, path: str = "") -> dict[str, Any]:
        """One docking with the fault; ``path`` (a regular expression) narrows the calls
        counted to those on matching paths."""
        rid = self.new_recording()
        if self.agent.running:
            self.agent.stop()
        arm = str(self.agent.dir / f"arm-{self._n}")
        fault = {"cat": category, "nth": nth, "errno": errno, "sticky": STICKY[errno],
                 "arm": arm, "path": path}
        crashes = self.crashes()
        events_before = len(self.console.snapshot()["events"])
        self.dock(rid, {"fault": fault, "activity": True, "shadow": True}, arm)
        fault_run = len(self.agent.procs) - 1
        out: dict[str, Any] = {"category": category, "nth": nth, "errno": errno, "rid": rid,
                               "path_filter": path}

        def reacted() -> str | None:
            if not self.agent.running:
                return "agent_exited"
            if self.crashes() > crashes:
                return "session_crashed"
            if self.complete(rid):
                return "completed"
            return None
        reaction = self.h.wait(reacted, f"a reaction to {errno} at {category} #{nth}",
                               _REACTION_S)
        fired = [e for e in self.agent.shim_events(fault_run) if e["what"] == "fault"]
        out["fired"] = bool(fired)
        out["path"] = fired[0]["path"] if fired else None
        out["phase"] = classify_phase(fired[0]["path"]) if fired else "not_fired"
        out["stack"] = fired[0]["stack"][-4:] if fired else None
        out["reaction"] = reaction
        # The moment after the fault's consequence: nothing released that could be lost.
        problems = self.inv.check_release_safety(f"{errno} at {category} #{nth}")

        # Recovery: the fault is gone. First the next docking (re-plug), then a restart.
        out["recovery"] = "none"
        # A read-only filesystem stays read-only until someone repairs it and restarts the
        # agent, even when it came too late to stop this docking (or comes later still).
        if STICKY[errno]:
            out["recovery"] = "restart"
        elif reaction != "completed":
            if self.agent.running:
                crashes = self.crashes()
                self.cam.stop()
                self.cam.start()
                second = self.h.wait(lambda: ("completed" if self.complete(rid) else
                                              "failed" if self.crashes() > crashes
                                              or not self.agent.running else None),
                                     "the next docking after the fault", _REACTION_S)
                out["recovery"] = "docking" if second == "completed" else "restart"
            else:
                out["recovery"] = "restart"
        if out["recovery"] == "restart":
            self.agent.stop()
            self.cam.stop()
            self.agent.start(shim={"shadow": True})
            self.cam.start()
            self.h.wait(lambda: self.complete(rid), "completion after a restart", _REACTION_S)
        self.h.wait(self.outbox_empty, "the outbox drained after recovery", _REACTION_S)
        if not out["fired"]:  # it may have come after the docking's end
            fired = [e for e in self.agent.shim_events(fault_run) if e["what"] == "fault"]
            out["fired"] = bool(fired)
            if fired:
                out["path"], out["phase"] = fired[0]["path"], classify_phase(fired[0]["path"])
            elif out["recovery"] == "restart":
                out["recovery"] = "none"
        new_events = self.console.snapshot()["events"][events_before:]
        out["alerts"] = sorted({e["event"] for e in new_events
                                if e["event"] in ("session_crashed", "storage_low")})
        if reaction == "session_crashed" and "session_crashed" not in out["alerts"]:
            problems.append(f"{errno} at {category} #{nth}: session crashed without an alert")
        if reaction == "agent_exited" and "error" not in self.agent.run_log(fault_run).lower():
            problems.append(f"{errno} at {category} #{nth}: the agent exited without a word")
        problems += self.inv.check_release_safety(f"after recovery from {errno}")
        # Then the power goes: what the camera released must have been on the disk. A
        # recording whose move into recordings/ was not durable is back in partial/, sealed
        # and complete: the agent's start-up recovery stores it again, so it counts as kept
        # once that recovery ran (a start without faults).
        self.agent.kill9()
        out["power_loss"] = power_cut(self.agent)
        where = f"power loss after recovery from {errno} at {category} #{nth}"
        released = {r for cam in self.inv.cameras for r in cam.released()}
        out["recovered_at_start"] = bool(released - self.agent.stored_ids())
        if out["recovered_at_start"]:
            self.agent.start()
            self.agent.stop()
        problems += self.inv.check_release_safety(where, durable=self.agent.stored_ids())
        verify = self.agent.cli("verify", rid)
        if verify.returncode != 0 or verify.stdout.strip() != f"{rid} OK":
            problems.append(f"{where}: verify {verify.stdout.strip()} {verify.stderr.strip()}")
        self.inv.problems += [p for p in problems if p not in self.inv.problems]
        out["problems"] = problems
        out["ok"] = not problems
        self.outcomes.append(out)
        return out


def _rig(e2e: Harness, mosquitto: Mosquitto, seed: int) -> IoRig:
    cam = e2e.camera("io", media=make_media([]), start=False)
    cam.create_key()
    agent = make_fault_agent(e2e, mosquitto.url, settings=_SETTINGS)
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    return IoRig(e2e, agent, console, cam, Invariants(e2e, console, [cam]),
                 random.Random(seed))


def _sweep(e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary], name: str,
           plan: Callable[[dict[str, int], random.Random], list[tuple[str, int, str, str]]]
           ) -> None:
    seed = int(os.environ.get("BWC_FAULTS_SEED", random.randrange(1 << 32)))
    rig = _rig(e2e, mosquitto, seed)
    ranges = rig.calibrate()
    s = summary(name)
    s.extra.update(seed=seed, calls_per_docking=ranges)
    try:
        for category, nth, errno, path in plan(ranges, rig.rng):
            out = rig.run(category, nth, errno, path)
            s.run(out["phase"], ok=out["ok"])
    finally:
        s.extra["errnos"] = dict(Counter(o["errno"] for o in rig.outcomes))
        s.extra["reactions"] = dict(Counter(o["reaction"] for o in rig.outcomes))
        s.extra["recoveries"] = dict(Counter(o["recovery"] for o in rig.outcomes))
        s.extra["stored_again_by_startup_recovery"] = sum(
            1 for o in rig.outcomes if o.get("recovered_at_start"))
        (e2e.root / "io-outcomes.json").write_text(json.dumps(rig.outcomes, indent=1))
    # A last run without faults settles what the power losses left pending.
    rig.agent.start()
    rig.h.wait(rig.outbox_empty, "the outbox drained at the end")
    rig.agent.stop()
    rig.inv.check_final()
    rig.inv.assert_ok()
    unsure = {c: _sure(n) for c, n in ranges.items()}
    not_fired = [o for o in rig.outcomes if not o["fired"] and o["nth"] <= unsure[o["category"]]
                 and not o.get("path_filter")]
    assert not not_fired, f"faults that never fired: {not_fired}"


def _sure(calls: int) -> int:
    """The calls of a docking vary a little with timing (status.json is rewritten when
    something changed within the second): the first 80 % are made by every docking."""
    return max(1, calls * 4 // 5)


def _sample(ranges: dict[str, int], rng: random.Random) -> list[tuple[str, int, str, str]]:
    """make test: every errno at every category at a random N, plus the first call, the
    fsync of a chunk (a failed fsync's bytes must never be taken for durable ones) and the
    directory fsync that stores a recording (its manifest must still go out at the next
    docking, not only after a restart)."""
    plan = [(category, rng.randint(1, _sure(ranges[category])), errno, "")
            for errno in STICKY for category in CATEGORIES]
    plan += [("fsync", 1, "EIO", ""), ("write", 1, "ENOSPC", ""),
             ("fsync", rng.randint(2, 4), "EIO", r"/chunks\.dat$"),
             ("fsync", 1, "ENOSPC", r"^footage/recordings$")]
    return plan


def _full(ranges: dict[str, int], rng: random.Random) -> list[tuple[str, int, str, str]]:
    """make soak: every N of every category; the errno rotates."""
    errnos = list(STICKY)
    return [(category, n, errnos[(n + i) % 3], "") for i, category in enumerate(CATEGORIES)
            for n in range(1, ranges[category] + 1)]


def test_io_errors_sampled_over_one_docking(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    _sweep(e2e, mosquitto, summary, "io-errors", _sample)


@pytest.mark.soak
def test_io_errors_at_every_call_of_one_docking(
    e2e: Harness, mosquitto: Mosquitto, summary: Callable[[str], Summary]
) -> None:
    _sweep(e2e, mosquitto, summary, "io-errors-soak", _full)
