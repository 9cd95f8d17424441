"""The rules end to end (issue 5): a real agent, emulated cameras and a real Mosquitto.

* Art. 4/8/12: a hand-out and hand-in reach the console's ledger; the recordings made in
  between are linked to the hand-out; a recording ended by the camera's own battery-empty log
  entry is an explained gap; an unexplained interruption stays open until the console sends a
  work record.
* Art. 13/15/16/18: an old recording comes in late (late_offload), is held, cannot be purged
  while held or unsigned, is purged by a signed command once unheld, leaving a tombstone; every
  step is in the audit log, whose signed head the console sees move.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.compliance.audit import verify_head
from agent.compliance.commands import sign_command
from agent.compliance.records import parse_iso_ms
from firmware_protocol.signing import load_public_key
from tests.e2e.harness import Camera, Console, Harness, make_media
from tests.helpers import Mosquitto

K = 1024
GAP_S = 1  # compliance.gap_threshold_s for these tests


def _put_media(cam: Camera, name: str, data: bytes, mtime_ms: int) -> None:
    """A new file on the camera, recorded (ending) at `mtime_ms` host time."""
    assert cam.media_dir is not None
    path = cam.media_dir / name
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ms * 1_000_000, mtime_ms * 1_000_000))
    cam.media[name] = data


def _result(e2e: Harness, console: Console, doc: dict[str, Any]) -> dict[str, Any]:
    console.send_command(doc)
    found = e2e.wait(lambda: console.cmd_result(doc["request_id"]),
                     f"cmd_result of {doc['command']} {doc['request_id']}")
    assert found is not None
    return found


def test_hand_out_hand_in_links_recordings_and_finds_gaps(e2e: Harness,
                                                          mosquitto: Mosquitto) -> None:
    cam = e2e.camera("patrol", media=make_media([20 * K]))
    agent = e2e.make_agent(mosquitto, settings={"erase_after": "stored",
                                                "compliance": {"gap_threshold_s": GAP_S}})
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start()

    first_in = e2e.wait(lambda: console.ledger_entries(cam, "hand_in"), "first hand-in")
    assert first_in[0]["handout_id"] is None  # never handed out by this dock before
    e2e.wait(lambda: console.ledger_entries(cam, "recording"), "first recording recorded")
    e2e.wait(lambda: cam.released() == set(cam.recordings), "camera emptied")
    cam.stop()  # the officer takes the camera
    (out,) = e2e.wait(lambda: console.ledger_entries(cam, "hand_out"), "hand-out recorded")
    assert out["slot"] == cam.slot and out["officer_id"] == cam.officer
    assert out["battery_pct"] == 100 and out["ready"] is True

    # The shift: three clips; the first ends with the camera's battery running out; between
    # the second and third a silence longer than the gap threshold that nothing explains.
    t_out = parse_iso_ms(out["at"])
    _put_media(cam, "shift-1.mp4", os.urandom(8 * K), t_out + 300)
    _put_media(cam, "shift-2.mp4", os.urandom(8 * K), t_out + 600)
    _put_media(cam, "shift-3.mp4", os.urandom(8 * K), t_out + 600 + 1600)
    cam.args += ["--log-event", f"battery_empty@0:{cam.rid('shift-1.mp4')}"]
    # The hand-in must come after the shift's last clip (the camera was out meanwhile).
    e2e.wait(lambda: time.time() * 1000 > t_out + 2400, "the shift to end")
    cam.start()

    ins = e2e.wait(lambda: console.ledger_entries(cam, "hand_in")[1:], "second hand-in")
    assert ins[0]["handout_id"] == out["handout_id"]
    shift = {cam.rid(f"shift-{i}.mp4") for i in (1, 2, 3)}

    def linked() -> list[dict[str, Any]] | None:
        recs = [r for r in console.ledger_entries(cam, "recording") if r["recording_id"] in shift]
        return recs if len(recs) == 3 else None

    recs = e2e.wait(linked, "the shift's recordings in the ledger")
    assert {r["handout_id"] for r in recs} == {out["handout_id"]}
    assert all(r["officer_id"] == cam.officer for r in recs)

    def two_gaps() -> list[dict[str, Any]] | None:
        gaps = console.ledger_entries(cam, "gap")
        return gaps if len(gaps) == 2 else None

    gaps = {g["kind"]: g for g in e2e.wait(two_gaps, "two gaps")}
    stop, silence = gaps["device_stop"], gaps["interruption"]
    assert (stop["status"], stop["reason"], stop["before_recording"]) == (
        "explained", 1, cam.rid("shift-1.mp4"))
    assert [e["kind"] for e in stop["evidence"]] == ["battery_empty"]
    assert (silence["status"], silence["reason"], silence["before_recording"]) == (
        "open", None, cam.rid("shift-2.mp4"))
    assert {e["details"]["gap_id"] for e in console.snapshot()["events"]
            if e["event"] == "gap"} == {stop["gap_id"], silence["gap_id"]}

    listed = agent.cli("gaps", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(x)["gap_id"] for x in listed.stdout.splitlines()] == [silence["gap_id"]]

    # The officer's work record, approved, comes from the console (Art. 12 (2): weather).
    doc = sign_command(None, command="work_record", dock_id=agent.dock_id, args={
        "gap_id": silence["gap_id"], "reason": 2, "text": "storm", "approver": "chief Li"})
    result = _result(e2e, console, doc)
    assert (result["ok"], result["error"]) == (True, None), result
    assert agent.cli("gaps", "--json").stdout == ""
    ledger = agent.cli("ledger", "--camera", cam.uid_hex, "--json")
    types = [json.loads(x)["type"] for x in ledger.stdout.splitlines()]
    assert types.count("hand_in") == 2 and types.count("hand_out") == 1
    assert types.count("recording") == 4


def test_late_offload_hold_purge_and_the_audit_head(e2e: Harness, mosquitto: Mosquitto,
                                                    tmp_path: Path) -> None:
    console_key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "console.pub"
    key_file.write_text(base64.b64encode(console_key.public_key().public_bytes_raw()).decode())
    cam = e2e.camera("archive", media={})
    eleven_years_ms = int((time.time() - 11 * 366 * 86400) * 1000)
    _put_media(cam, "old.mp4", os.urandom(16 * K), eleven_years_ms)
    cam.stop()
    agent = e2e.make_agent(mosquitto, settings={"erase_after": "stored",
                                                "console_public_keys": [str(key_file)]})
    agent.enroll(cam)
    console = e2e.console(mosquitto)
    agent.start()
    cam.start()
    rid = cam.rid("old.mp4")
    (late,) = e2e.wait(lambda: console.ledger_entries(cam, "late_offload"), "late offload")
    assert late["recording_id"] == rid and late["offload_delay_s"] > 10 * 365 * 86400
    (rec,) = e2e.wait(lambda: console.ledger_entries(cam, "recording"), "recording")
    assert parse_iso_ms(rec["expires_at"]) < time.time() * 1000  # past 120 months already
    expired = agent.cli("retention", "--expired", "--json")
    assert [json.loads(x)["recording_id"] for x in expired.stdout.splitlines()] == [rid]

    def signed(name: str, **args: Any) -> dict[str, Any]:
        return sign_command(console_key, command=name, dock_id=agent.dock_id, args=args)

    purge = {"recording_ids": [rid], "admin_id": "adm-1", "reason": "no value (Art. 15)"}
    assert _result(e2e, console, signed("hold", recording_ids=[rid], reason="dispute",
                                        text="complaint 2026-114"))["ok"] is True
    assert _result(e2e, console, signed("purge", **purge))["error"] == "held"
    unsigned = sign_command(None, command="purge", dock_id=agent.dock_id, args=purge)
    assert _result(e2e, console, unsigned)["error"] == "unsigned"
    assert _result(e2e, console, signed("unhold", recording_ids=[rid], text="settled"))["ok"]
    assert _result(e2e, console, signed("purge", **purge))["ok"] is True

    (tomb,) = e2e.wait(lambda: console.ledger_entries(cam, "purge"), "tombstone")
    assert (tomb["recording_id"], tomb["admin_id"]) == (rid, "adm-1")
    assert tomb["sha256"] == rec["sha256"]
    assert any(e["event"] == "purged" and e["details"]["recording_id"] == rid
               for e in console.snapshot()["events"])
    assert rid not in agent.stored_ids()
    assert agent.cli("retention", "--expired", "--json").stdout == ""
    export = agent.cli("export", rid, "--out", tmp_path / "x.mp4")
    assert export.returncode == 1

    audit = agent.cli("audit", "verify")
    assert audit.returncode == 0, audit.stderr
    shown = [json.loads(x) for x in agent.cli("audit", "show").stdout.splitlines()]
    commands = [(a["command"], a["outcome"]) for a in shown if a["action"] == "command"]
    assert commands == [("hold", "ok"), ("purge", "held"), ("purge", "unsigned"),
                        ("unhold", "ok"), ("purge", "ok")]
    last_seq = shown[-1]["seq"]

    def head_at_last() -> dict[str, Any] | None:
        heads = console.snapshot()["audit_heads"]
        return heads[-1] if heads and heads[-1]["seq"] == last_seq else None

    head = e2e.wait(head_at_last, "the audit head to reach the last entry")
    identity = console.identity
    assert identity is not None
    verify_head(head, load_public_key(base64.b64decode(identity["public_key"])))


def test_a_crashed_session_still_records_the_hand_out(e2e: Harness, mosquitto: Mosquitto) -> None:
    """A session that crashes (here: the dock's own store is damaged, so the offload raises
    CorruptStoreError) keeps the camera reported docked, parked, and when the officer takes
    the camera its hand-out is on the ledger like any other (Art. 4): the next hand-in closes
    it."""
    cam = e2e.camera("unlucky", media=make_media([64 * K]), start=False)
    cam.create_key()
    agent = e2e.make_agent(mosquitto)
    agent.enroll(cam)
    partial = agent.state_dir / "footage" / "partial" / cam.rid("clip-00.mp4")
    partial.mkdir(parents=True, mode=0o700)  # chunk data whose meta.json (data key) is lost
    (partial / "chunks.dat").write_bytes(b"\x00" * 100)
    console = e2e.console(mosquitto)
    agent.start()
    cam.start()

    e2e.wait(lambda: console.events_named("session_crashed"), "the crash alert")
    e2e.wait(lambda: console.ledger_entries(cam, "hand_in"), "the hand-in before the crash")
    last = console.last_status(cam)
    assert last is not None and last["docked"] is True  # parked in its slot, not undocked
    assert cam.released() == set()

    cam.stop()  # the officer takes it anyway
    (out,) = e2e.wait(lambda: console.ledger_entries(cam, "hand_out"), "the hand-out recorded")
    assert out["slot"] == cam.slot
    e2e.wait(lambda: (s := console.last_status(cam)) is not None and s["docked"] is False,
             "the camera reported undocked")
    cam.start()
    ins = e2e.wait(lambda: console.ledger_entries(cam, "hand_in")[1:], "the next hand-in")
    assert ins[0]["handout_id"] == out["handout_id"]
    e2e.wait(lambda: len(console.events_named("session_crashed")) >= 2,
             "the second crash alert (the store is still damaged)")
