"""dock-agent compliance subcommands: assign, ledger, gaps, retention, hold, unhold, audit."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli import main
from agent.compliance.service import Compliance, ComplianceSettings
from agent.registry import Registry
from agent.store.footage import FootageStore
from agent.store.keys import KeyStore
from tests.helpers.recordings import store_recording

UID = bytes(range(16))
CAM = Ed25519PrivateKey.generate()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    path = tmp_path / "agent.toml"
    path.write_text(f'dock_id = "dock-01"\nunit = "zhanhe"\nstate_dir = "{state}"\n')
    keys = KeyStore(state)
    keys.wrap_key_id  # noqa: B018 - as the daemon does at first start: both keys exist
    keys.signing_key  # noqa: B018
    registry = Registry(state / "state.json")
    registry.enroll(UID, CAM.public_key(), officer_id="PD-1", by="cli")
    registry.close()
    return path


def run(cfg: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main([*args, "--config", str(cfg)])
    out, err = capsys.readouterr()
    return rc, out, err


def _book(cfg: Path) -> Compliance:
    state = cfg.parent / "state"
    keys = KeyStore(state, create=False)
    return Compliance(state, ComplianceSettings(dock_id="dock-01"),
                      store=FootageStore(state / "footage", keys),
                      registry=Registry(state / "state.json"))


def test_assign_then_ledger_as_json_and_csv(cfg: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    assert run(cfg, capsys, "assign", "--camera-uid", UID.hex(), "--officer", "PD-7")[0] == 0
    book = _book(cfg)
    try:
        book.hand_out(UID, slot="slot-1", status={"battery_pct": 97}, ready=True, reasons=[])
    finally:
        book.close()
    rc, out, _ = run(cfg, capsys, "ledger", "--camera", UID.hex(), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [r["type"] for r in rows] == ["assignment", "hand_out"]
    assert rows[1]["officer_id"] == "PD-7" and rows[1]["battery_pct"] == 97
    rc, out, _ = run(cfg, capsys, "ledger", "--officer", "PD-7", "--csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["type"] for r in table] == ["assignment", "hand_out"]
    rc, out, _ = run(cfg, capsys, "ledger", "--officer", "PD-7", "--from", "2001-01-01",
                     "--to", "2001-01-31", "--json")
    assert rc == 0 and out == ""
    rc, out, _ = run(cfg, capsys, "audit", "verify")
    assert rc == 0 and "audit log OK: 1 entries" in out and "compliance records OK: 2" in out


@pytest.mark.parametrize("args, message", [
    (("assign", "--camera-uid", "zz", "--officer", "x"), "32 hex digits"),
    (("assign", "--camera-uid", "00" * 16, "--officer", "x"), "not enrolled (not_found)"),
    (("ledger", "--from", "2026-13-01"), "bad date"),
    (("ledger", "--from", "2026-02-01", "--to", "2026-01-01"), "--from is after --to"),
    (("hold", "00" * 16, "--reason", "dispute", "--text", "t"), "is not stored (not_found)"),
    (("unhold", "00" * 16, "--text", "t"), "not under hold"),
    (("retention",), "--expired"),
])
def test_bad_input_is_one_line_and_status_1(cfg: Path, capsys: pytest.CaptureFixture[str],
                                            args: tuple[str, ...], message: str) -> None:
    rc, _, err = run(cfg, capsys, *args)
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1


def test_hold_unhold_retention_and_gaps(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = _book(cfg)
    try:
        fx = store_recording(book.store, camera_key=CAM, dock_key=Ed25519PrivateKey.generate(),
                             camera_uid=UID, started_ms=946_684_800_000,  # 2000-01-01
                             ended_ms=946_688_400_000)
        book.recording_stored(fx.manifest)
    finally:
        book.close()
    rid = fx.recording_id.hex()
    rc, out, _ = run(cfg, capsys, "retention", "--expired", "--json")
    assert rc == 0 and [json.loads(x)["recording_id"] for x in out.splitlines()] == [rid]
    assert run(cfg, capsys, "hold", rid, "--reason", "dispute", "--text", "case 9")[0] == 0
    rc, out, _ = run(cfg, capsys, "retention", "--expired", "--json")
    assert json.loads(out)["held"] is True
    assert run(cfg, capsys, "unhold", rid, "--text", "closed")[0] == 0
    rc, out, _ = run(cfg, capsys, "gaps")
    assert rc == 0 and "0 open gap(s)" in out
    rc, out, _ = run(cfg, capsys, "audit", "show")
    assert [json.loads(x)["action"] for x in out.splitlines()] == ["hold", "unhold"]
    assert all(json.loads(x)["actor"].startswith("cli:") for x in out.splitlines())


def test_audit_verify_fails_loudly_after_an_edit(cfg: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for officer in ("A", "B", "C"):
        run(cfg, capsys, "assign", "--camera-uid", UID.hex(), "--officer", officer)
    (seg,) = (cfg.parent / "state" / "journal" / "audit").glob("*.jsonl")
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"officer_id":"A"', b'"officer_id":"Z"')
    seg.write_bytes(b"".join(lines))
    rc, _, err = run(cfg, capsys, "audit", "verify")
    assert rc == 1 and "hash chain broken at seq 2" in err


def test_preserve_two_copies_and_the_report(cfg: Path, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    state = cfg.parent / "state"
    book = _book(cfg)
    try:
        fx = store_recording(book.store, camera_key=CAM, dock_key=KeyStore(state).signing_key,
                             camera_uid=UID, started_ms=1_767_225_600_000,
                             ended_ms=1_767_229_200_000)
        book.recording_stored(fx.manifest)
    finally:
        book.close()
    rid = fx.recording_id.hex()
    outs = [tmp_path / "disc1", tmp_path / "disc2"]
    for o in outs:
        o.mkdir()
    rc, out, err = run(cfg, capsys, "preserve", rid, "--case-name", "Market stall dispute",
                       "--case-number", "2026-114", "--producer", "clerk Wang",
                       "--out", str(outs[0]), "--out", str(outs[1]), "--format", "dir")
    assert rc == 0, err
    assert out.count("verified") == 2
    for o in outs:
        (copy,) = o.iterdir()
        assert "2026-114" in (copy / "LABEL.TXT").read_text()
    rc, out, err = run(cfg, capsys, "preserve", rid, "--case-name", "x", "--case-number", "y",
                       "--producer", "z", "--out", str(outs[0]))
    assert rc == 1 and len(err.strip().splitlines()) == 1
    rc, out, _ = run(cfg, capsys, "audit", "show")
    actions = [json.loads(x) for x in out.splitlines()]
    assert [(a["action"], a["outcome"]) for a in actions] == [("preserve", "ok"),
                                                             ("preserve", "failed")]
    rc, out, _ = run(cfg, capsys, "report", "--year", "2026")
    assert rc == 0 and json.loads(out)["fleet"]["recordings"] == 1
    html = tmp_path / "review.html"
    assert run(cfg, capsys, "report", "--year", "2026", "--format", "html", "--out",
               str(html))[0] == 0
    assert "<svg" in html.read_text()
    assert run(cfg, capsys, "report", "--year", "2026", "--out", str(html))[0] == 1
