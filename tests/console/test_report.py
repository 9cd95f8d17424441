"""The console's annual review is the dock's: the same JSON and CSV from the same records
(agent.compliance.report is the reference here, in the tests only), and across docks one row
per camera."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.compliance import report as dock_report
from bwc_console import report as console_report
from bwc_console.fleet_report import FLEET, fleet_report
from bwc_console.report_render import render
from bwc_console.store import Store
from tests.compliance.test_report import CAM_A, gap, rec, scenario, synthetic_year, work_record

GENERATED = "2027-01-02T08:00:00.000Z"


def _both(records: list[dict[str, Any]], **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    common = {"year": 2026, "dock_id": "dock-01", "unit": "u", "generated_at": GENERATED, **kw}
    ours = console_report.build_report(records, docks=["dock-01"], **common).to_dict()
    theirs = dock_report.build_report(records, **common).to_dict()
    assert ours.pop("docks") == ["dock-01"]
    return ours, theirs


@pytest.mark.parametrize("records", [
    scenario(),
    list(synthetic_year(4, 90, 3)),
    [*scenario(), rec("recording", None), rec("gap", "2026-01-01T00:00:00.000Z"),
     rec("mystery", "2026-01-01T00:00:00.000Z"), rec("hand_in", "2025-12-31T23:59:59.999Z"),
     rec("recording", "2026-02-01T00:00:00.000Z", duration_s="long"),
     gap("2026-03-10T15:13:00.000Z", "g1", CAM_A, "o1"),
     work_record("2026-05-01T00:00:00.000Z", "never-seen")],
], ids=["scenario", "synthetic", "malformed"])
def test_same_json_and_csv_as_the_dock(records: list[dict[str, Any]]) -> None:
    lookup = {"r1": {"camera_uid": CAM_A, "officer_id": "o1"}}.get
    carried = [gap("2025-06-01T00:00:00.000Z", "old", CAM_A, "o1")]
    ours, theirs = _both(records, recording_lookup=lookup, open_gaps=carried)
    assert ours == theirs
    common = {"year": 2026, "dock_id": "dock-01", "unit": "u", "generated_at": GENERATED,
              "recording_lookup": lookup, "open_gaps": carried}
    assert render(console_report.build_report(records, docks=["dock-01"], **common), "csv") == \
        dock_report.render_csv(dock_report.build_report(records, **common))
    assert dock_report.Report.from_dict(theirs) == dock_report.Report.from_dict(ours)


def _store_ledger(store: Store, dock: str, records: list[dict[str, Any]]) -> None:
    for seq, entry in enumerate(records, 1):
        entry = {**entry, "seq": seq}
        store.save_record("ledger", dock, f"{dock}:{seq}",
                          {"type": "ledger", "schema": 1, "dock_id": dock, "id": f"{dock}:{seq}",
                           "entry": entry}, at=entry["at"], seq=seq)


def test_from_the_store_one_dock_and_the_fleet(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    records = scenario()
    _store_ledger(store, "dock-01", [gap("2025-06-01T00:00:00.000Z", "old", CAM_A, "o1"),
                                     *records, work_record("2026-02-01T00:00:00.000Z", "old")])
    one = fleet_report(store, 2026, generated_at=GENERATED).to_dict()
    reference = dock_report.build_report(
        [*records, work_record("2026-02-01T00:00:00.000Z", "old")], year=2026,
        dock_id="dock-01", unit="", generated_at=GENERATED,
        open_gaps=[gap("2025-06-01T00:00:00.000Z", "old", CAM_A, "o1")]).to_dict()
    assert one.pop("docks") == ["dock-01"]
    assert one == reference
    assert one["work_records"]["for_earlier_gaps"] == 1

    # A second dock where camera A was handed in too: one camera row over both docks.
    _store_ledger(store, "dock-02", [rec("hand_in", "2026-08-01T00:00:00.000Z",
                                         camera_uid=CAM_A, officer_id="o1")])
    fleet = fleet_report(store, 2026, generated_at=GENERATED).to_dict()
    assert (fleet["dock_id"], fleet["docks"]) == (FLEET, ["dock-01", "dock-02"])
    assert fleet["cameras"][CAM_A]["hand_ins"] == one["cameras"][CAM_A]["hand_ins"] + 1
    only2 = fleet_report(store, 2026, dock="dock-02", generated_at=GENERATED).to_dict()
    assert only2["fleet"]["hand_ins"] == 1 and only2["dock_id"] == "dock-02"
    html = render(fleet_report(store, 2026), "html")
    assert "<script" not in html and "http" not in html.replace('lang="en"', "")
    assert CAM_A in html
    json.loads(render(fleet_report(store, 2026), "json"))
