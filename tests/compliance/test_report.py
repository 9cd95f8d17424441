"""Tests for agent.compliance.report: the Art. 17 annual review from compliance records."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from agent.compliance.charts import bar_chart, nice_scale
from agent.compliance.report import (
    UNASSIGNED,
    UNKNOWN,
    Report,
    Tally,
    build_report,
    render_csv,
    render_html,
    render_json,
)

CAM_A, CAM_B = "c0ffee00000000000000000000000001", "c0ffee00000000000000000000000002"
HOUR = 3600


def rec(type_: str, at: Any, /, **fields: Any) -> dict[str, Any]:
    """A record as the journal holds it: ``type``, ``at``, ``seq``/``prev`` and the fields."""
    return {"type": type_, "at": at, "seq": 1, "prev": "0" * 64, **fields}


def recording(at: str, camera: str, officer: str | None, *, duration_s: float = 600,
              delay_s: float | None = 60, size: int = 1000, stored_at: str | None = None,
              rid: str = "r1") -> dict[str, Any]:
    return rec("recording", at, recording_id=rid, manifest_id="m" + rid, camera_uid=camera,
               officer_id=officer, handout_id="h1", media="video", started_at=at, ended_at=at,
               duration_s=duration_s, size=size, sha256="0" * 64, stored_at=stored_at or at,
               offload_delay_s=delay_s, expires_at="2036-01-01T00:00:00.000Z")


def gap(at: str, gap_id: str, camera: str, officer: str | None, status: str = "open",
        **extra: Any) -> dict[str, Any]:
    return rec("gap", at, gap_id=gap_id, camera_uid=camera, officer_id=officer,
               handout_id="h1", kind="interruption", **{"from": at, "to": at}, duration_s=1800,
               before_recording="r1", after_recording="r2", status=status,
               reason=1 if status == "explained" else None, evidence=[], **extra)


def work_record(at: str, gap_id: str) -> dict[str, Any]:
    return rec("work_record", at, gap_id=gap_id, reason=2, text="foot chase", approver="sgt",
               request_id="q")


def report(records: Iterable[dict[str, Any]], **kw: Any) -> Report:
    kw = {"year": 2026, "dock_id": "dock-01", "unit": "zhanhe-legal",
          "generated_at": "2027-01-02T08:00:00.000Z", **kw}
    return build_report(records, **kw)


def scenario() -> list[dict[str, Any]]:
    """One of every record type, two cameras, officers o1 and o2, one unassigned stretch."""
    d = "2026-03-10T"
    return [
        rec("assignment", d + "06:00:00.000Z", camera_uid=CAM_A, officer_id="o1", by="console",
            request_id="a"),
        rec("hand_out", d + "07:00:00.000Z", handout_id="h1", camera_uid=CAM_A, officer_id="o1",
            slot=1, battery_pct=100, storage_free_bytes=10**9, ready=True, reasons=[]),
        rec("hand_out", d + "07:05:00.000Z", handout_id="h2", camera_uid=CAM_B, officer_id=None,
            slot=2, battery_pct=20, storage_free_bytes=10**9, ready=False,
            reasons=["battery_low"]),
        rec("hand_in", d + "15:00:00.000Z", handout_id="h1", camera_uid=CAM_A, officer_id="o1",
            slot=1, battery_pct=40, storage_free_bytes=10**8, clock_offset_ms=3),
        recording(d + "15:10:00.000Z", CAM_A, "o1", duration_s=1800, delay_s=30 * HOUR,
                  size=5000, rid="r1"),
        recording(d + "15:11:00.000Z", CAM_A, "o1", duration_s=5400, delay_s=HOUR, rid="r2"),
        rec("late_offload", d + "15:10:00.001Z", camera_uid=CAM_A, officer_id="o1",
            recording_id="r1", manifest_id="mr1", offload_delay_s=30 * HOUR),
        rec("integrity_failure", d + "15:12:00.000Z", camera_uid=CAM_A, recording_id="r3",
            reason="chunk_hash", detail="chunk 4"),
        gap(d + "15:13:00.000Z", "g1", CAM_A, "o1"),
        gap(d + "15:13:00.001Z", "g2", CAM_A, "o1", status="explained"),
        gap(d + "15:13:00.002Z", "g3", CAM_A, "o1"),
        work_record("2026-04-01T09:00:00.000Z", "g1"),
        rec("readiness_failure", d + "15:20:00.000Z", camera_uid=CAM_A, officer_id="o1", slot=1,
            reasons=["battery_low", "clock_unsynced"]),
        rec("readiness_failure", "2026-07-01T00:00:00.000Z", camera_uid=CAM_B, officer_id="o2",
            slot=2, reasons=["battery_low"]),
        rec("overdue_camera", "2026-03-11T08:00:00.000Z", camera_uid=CAM_B, officer_id=None,
            handout_id="h2", out_since=d + "07:05:00.000Z", limit_s=86400),
        rec("hold", "2026-05-01T00:00:00.000Z", recording_id="r1", reason="dispute", text="x",
            by="console", request_id="b"),
        rec("unhold", "2026-06-01T00:00:00.000Z", recording_id="r1", reason="closed", text="y",
            by="console", request_id="c"),
        rec("purge", "2026-12-31T23:59:59.999Z", recording_id="old", manifest_id="mold",
            sha256="0" * 64, camera_uid=CAM_B, started_at="2016-01-01T00:00:00.000Z",
            admin_id="adm", reason="expired", request_id="d"),
    ]


def test_every_aggregate_per_camera_officer_and_fleet() -> None:
    lookup = {"r1": {"camera_uid": CAM_A, "officer_id": "o1"}}.get
    r = report(scenario(), recording_lookup=lookup)
    a, b = r.cameras[CAM_A], r.cameras[CAM_B]
    assert (a.assignments, a.hand_outs, a.hand_outs_not_ready, a.hand_ins) == (1, 1, 0, 1)
    assert (a.recordings, a.recorded_s, a.hours_recorded, a.stored_bytes) == (2, 7200, 2.0, 6000)
    assert a.max_offload_delay_s == 30 * HOUR
    assert a.readiness_failures == 1
    assert a.readiness_reasons == {"battery_low": 1, "clock_unsynced": 1}
    assert (a.late_offloads, a.integrity_alerts, a.holds, a.unholds, a.purges) == (1, 1, 1, 1, 0)
    assert (a.gaps, a.gaps_explained, a.gaps_closed, a.gaps_open) == (3, 1, 1, 1)
    assert (b.hand_outs, b.hand_outs_not_ready, b.overdue, b.purges) == (1, 1, 1, 1)
    assert b.readiness_reasons == {"battery_low": 1}

    o1, o2 = r.officers["o1"], r.officers["o2"]
    assert (o1.hand_outs, o1.recordings, o1.hours_recorded, o1.gaps_open) == (1, 2, 2.0, 1)
    assert o1.integrity_alerts == 1  # no officer in the record: the camera's latest hand-in
    assert (o1.holds, o1.unholds) == (1, 1)  # via recording_lookup
    assert o2.readiness_failures == 1 and o2.hand_outs == 0
    assert r.officers[UNASSIGNED].hand_outs == 1 and r.officers[UNASSIGNED].overdue == 1
    assert r.officers[UNKNOWN].purges == 1  # purge names the camera but not the officer

    for table in (r.cameras, r.officers):  # every record counted once per table
        total = Tally()
        for t in table.values():
            total.add(t)
        assert total == r.fleet
    assert r.fleet.readiness_failures == 2
    assert r.fleet.readiness_reasons == {"battery_low": 2, "clock_unsynced": 1}
    assert r.offload_delay == [1, 0, 0, 1, 0] and r.offload_delay_unknown == 0
    assert r.readiness_per_month == [0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert [g.gap_id for g in r.open_gaps] == ["g3"]
    g3 = r.open_gaps[0]
    assert (g3.camera_uid, g3.officer_id, g3.kind, g3.in_year) == (CAM_A, "o1", "interruption",
                                                                   True)
    assert g3.start == g3.end == "2026-03-10T15:13:00.002Z"
    assert r.records == {"in_year": 18, "outside_year": 0, "unknown_type": 0, "malformed": 0,
                         "duplicate_gaps": 0}
    assert r.work_records == {"total": 1, "for_earlier_gaps": 0, "unmatched": 0}


def test_records_outside_the_year_are_ignored() -> None:
    records = [
        rec("hand_out", "2025-12-31T23:59:59.999Z", camera_uid=CAM_A, officer_id="o1"),
        rec("hand_out", "2026-01-01T00:00:00.000Z", camera_uid=CAM_A, officer_id="o1"),
        rec("hand_out", "2027-01-01T00:00:00.000Z", camera_uid=CAM_A, officer_id="o1"),
        # a recording counts by stored_at, not by at
        recording("2025-12-31T22:00:00.000Z", CAM_A, "o1", stored_at="2026-01-01T01:00:00.000Z"),
        recording("2026-12-31T22:00:00.000Z", CAM_A, "o1", stored_at="2027-01-01T01:00:00.000Z"),
        rec("readiness_failure", "2027-01-01T00:00:00.000Z", camera_uid=CAM_A, officer_id="o1",
            reasons=["battery_low"]),
    ]
    r = report(records)
    assert (r.fleet.hand_outs, r.fleet.recordings, r.fleet.readiness_failures) == (1, 1, 0)
    assert r.records["in_year"] == 2 and r.records["outside_year"] == 4
    assert report(records, year=2027).fleet.hand_outs == 1
    assert report(records, year=2024).cameras == {}


def test_gap_closing_orders_and_earlier_years() -> None:
    carried = gap("2025-11-01T00:00:00.000Z", "old1", CAM_B, "o2")
    carried_still_open = gap("2025-12-01T00:00:00.000Z", "old2", CAM_B, None)
    also_in_year = gap("2026-02-01T00:00:00.000Z", "g1", CAM_A, "o1")
    records = [
        work_record("2026-01-05T00:00:00.000Z", "g2"),  # before its gap in the stream
        gap("2026-01-04T00:00:00.000Z", "g2", CAM_A, "o1"),
        also_in_year,
        work_record("2026-03-01T00:00:00.000Z", "old1"),  # closes a gap of 2025
        work_record("2026-03-02T00:00:00.000Z", "nope"),  # no such gap anywhere
        gap("2026-04-01T00:00:00.000Z", "g4", CAM_A, "o1"),
        gap("2026-04-01T00:00:00.000Z", "g4", CAM_A, "o1"),  # the same gap twice
        work_record("2027-01-01T00:00:00.000Z", "g4"),  # next year: not this report's business
    ]
    r = report(records, open_gaps=[carried, carried_still_open, also_in_year])
    a = r.cameras[CAM_A]
    assert (a.gaps, a.gaps_closed, a.gaps_open) == (3, 1, 2)
    assert [(g.gap_id, g.in_year) for g in r.open_gaps] == [
        ("old2", False), ("g1", True), ("g4", True)]  # ordered by the gap's start
    assert r.open_gaps[0].officer_id == UNASSIGNED
    assert r.work_records == {"total": 3, "for_earlier_gaps": 1, "unmatched": 1}
    assert r.records["duplicate_gaps"] == 1 and r.records["malformed"] == 0
    assert CAM_B not in r.cameras  # the carried gaps are listed, not counted again
    with pytest.raises(ValueError, match="gap_id"):
        report([], open_gaps=[{"camera_uid": CAM_A}])


def test_unassigned_and_unknown_attribution() -> None:
    records = [
        rec("hand_out", "2026-05-01T08:00:00.000Z", camera_uid=CAM_A, officer_id=None),
        recording("2026-05-01T09:00:00.000Z", CAM_A, None),
        rec("integrity_failure", "2026-05-01T09:01:00.000Z", camera_uid=CAM_A, recording_id="x",
            reason="bad_signature", detail=""),
        rec("integrity_failure", "2026-05-01T09:02:00.000Z", camera_uid=CAM_B, recording_id="y",
            reason="bad_signature", detail=""),  # nothing known about CAM_B's officer
        rec("hold", "2026-05-02T00:00:00.000Z", recording_id="r1", reason="dispute"),
        rec("late_offload", "2026-05-03T00:00:00.000Z", camera_uid=None, officer_id=7),
    ]
    r = report(records)  # no recording_lookup
    assert set(r.officers) == {UNASSIGNED, UNKNOWN, "7"}
    u = r.officers[UNASSIGNED]
    assert (u.hand_outs, u.recordings, u.integrity_alerts) == (1, 1, 1)
    assert r.officers[UNKNOWN].integrity_alerts == 1 and r.officers[UNKNOWN].holds == 1
    assert r.cameras[UNKNOWN].holds == 1 and r.cameras[UNKNOWN].late_offloads == 1
    assert r.to_dict()["fleet"]["cameras"] == 2 and r.to_dict()["fleet"]["officers"] == 1
    assert list(r.to_dict()["officers"]) == ["7", UNASSIGNED, UNKNOWN]  # real ids first


def test_officers_in_natural_order_cameras_in_plain_order() -> None:
    records = [rec("hand_out", "2026-01-01T00:00:00.000Z", camera_uid=cam, officer_id=officer)
               for cam, officer in (("0a", "officer-10"), ("09", "officer-2"), ("10", None))]
    data = report(records).to_dict()
    assert list(data["officers"]) == ["officer-2", "officer-10", UNASSIGNED]
    assert list(data["cameras"]) == ["09", "0a", "10"]


def test_offload_delay_buckets_are_upper_inclusive() -> None:
    delays = [-5, 0, HOUR, HOUR + 1, 24 * HOUR, 24 * HOUR + 1, 48 * HOUR, 48 * HOUR + 0.5, None]
    records = [recording("2026-08-01T00:00:00.000Z", CAM_A, "o1", delay_s=d) for d in delays]
    r = report(records)
    # exactly 24 h is on time (Art. 13 says "more than 24 h"); late buckets are 24-48 h and > 48 h
    assert r.offload_delay == [3, 1, 1, 2, 1]
    assert r.offload_delay_unknown == 1 and r.fleet.recordings == 9
    assert r.fleet.max_offload_delay_s == 48 * HOUR + 0.5


def test_malformed_and_unknown_records_are_counted_not_fatal() -> None:
    good = rec("hand_out", "2026-01-01T00:00:00.000Z", camera_uid=CAM_A, officer_id="o1")
    records = [
        {"type": "hand_out"},  # no at
        rec("hand_out", 1767225600),  # at is not a string
        rec("teleport", "2026-01-01T00:00:00.000Z"),
        recording("2026-01-01T00:00:00.000Z", CAM_A, "o1", duration_s="long"),  # type: ignore[arg-type]
        recording("2026-01-01T00:00:00.000Z", CAM_A, "o1", delay_s=True),
        rec("readiness_failure", "2026-13-01T00:00:00.000Z", camera_uid=CAM_A, reasons=[]),
        rec("readiness_failure", "2026-01-01T00:00:00.000Z", camera_uid=CAM_A, reasons="x"),
        rec("gap", "2026-01-01T00:00:00.000Z", camera_uid=CAM_A, status="open"),  # no gap_id
        rec("work_record", "2026-01-01T00:00:00.000Z", gap_id=None),
        good,
    ]
    r = report(records)
    assert r.records == {"in_year": 1, "outside_year": 0, "unknown_type": 1, "malformed": 8,
                         "duplicate_gaps": 0}
    assert r.fleet == Tally(hand_outs=1)  # nothing half-counted from a malformed record
    assert "malformed 8" in render_html(r)


def test_readiness_failure_without_reasons() -> None:
    r = report([rec("readiness_failure", "2026-02-02T00:00:00.000Z", camera_uid=CAM_A,
                    officer_id="o1", reasons=[])])
    assert r.fleet.readiness_reasons == {"(none given)": 1}
    assert r.readiness_per_month[1] == 1


def test_csv_one_row_per_camera_and_officer_then_fleet() -> None:
    records = [*scenario(), rec("hand_out", "2026-09-09T00:00:00.000Z", camera_uid=CAM_A,
                                officer_id="=HYPERLINK(1)")]
    text = render_csv(report(records))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["scope"], row["id"]) for row in rows] == [
        ("camera", CAM_A), ("camera", CAM_B), ("camera", UNKNOWN),
        ("officer", "'=HYPERLINK(1)"), ("officer", "o1"),
        ("officer", "o2"), ("officer", UNASSIGNED), ("officer", UNKNOWN), ("fleet", "")]
    fleet = rows[-1]
    assert fleet["hand_outs"] == "3" and fleet["recordings"] == "2"
    assert fleet["hours_recorded"] == "2.0" and fleet["late_offloads"] == "1"
    assert fleet["readiness:battery_low"] == "2" and fleet["readiness:clock_unsynced"] == "1"
    assert (fleet["gaps"], fleet["gaps_explained"], fleet["gaps_closed"],
            fleet["gaps_open"]) == ("3", "1", "1", "1")
    assert rows[0]["readiness:clock_unsynced"] == "1" and rows[1]["readiness:clock_unsynced"] == "0"
    header = text.splitlines()[0].split(",")
    assert header.index("readiness:clock_unsynced") < header.index("readiness:battery_low")
    assert sum(int(row["integrity_alerts"]) for row in rows if row["scope"] == "officer") == 1


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs


def test_html_is_one_printable_self_contained_file() -> None:
    evil = '<script>alert("x")</script>'
    records = [*scenario(), gap("2026-10-10T00:00:00.000Z", "g<9>", CAM_B, evil)]
    html = render_html(report(records, dock_id="dock&01", unit="unit\"7"))
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    parser = _Tags()
    parser.feed(html)
    assert parser.tags.count("html") == 1 and parser.tags.count("svg") == 2
    assert "script" not in parser.tags and "img" not in parser.tags and "link" not in parser.tags
    assert all(name not in ("src", "href") for name, _ in parser.attrs)
    assert not re.search(r"(src|href)\s*=|https?:|url\(|@import", html, re.I)
    assert "@media print" in html and "@page" in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "g&lt;9&gt;" in html and "dock&amp;01" in html and "unit&quot;7" in html
    for text in ("Per camera", "Per officer", "Open gaps", "Offload delay",
                 "Readiness failures per month", CAM_A, "o2", "2026-03-10T15:13:00.002Z"):
        assert text in html
    assert "No open gaps." in render_html(report([]))


def test_json_round_trips() -> None:
    lookup = {"r1": {"camera_uid": CAM_A, "officer_id": "o1"}}.get
    r = report(scenario(), recording_lookup=lookup,
               open_gaps=[gap("2025-01-01T00:00:00.000Z", "old", CAM_B, None)])
    text = render_json(r)
    data = json.loads(text)
    assert (data["type"], data["schema"], data["year"], data["dock_id"]) == (
        "annual_report", 1, 2026, "dock-01")
    assert data["period"] == {"from": "2026-01-01T00:00:00.000Z", "to": "2027-01-01T00:00:00.000Z"}
    assert data["fleet"]["cameras"] == 2 and data["fleet"]["hours_recorded"] == 2.0
    assert [b["count"] for b in data["offload_delay"]["buckets"]] == r.offload_delay
    assert data["offload_delay"]["buckets"][-1]["max_s"] is None
    assert data["open_gaps"][0]["from"] == "2025-01-01T00:00:00.000Z"
    assert Report.from_dict(data) == r
    assert render_json(Report.from_dict(data)) == text


def test_year_out_of_range() -> None:
    with pytest.raises(ValueError):
        report([], year=0)


def test_charts() -> None:
    assert nice_scale(0) == (1, 1) and nice_scale(3) == (3, 1) and nice_scale(7) == (8, 2)
    assert nice_scale(1000) == (1000, 250) or nice_scale(1000) == (1000, 500)
    svg = bar_chart(["a<", "b"], [0, 5], title="T&", x_label="x", y_label="y", emphasis={1})
    assert svg.startswith("<svg") and svg.endswith("</svg>") and svg.count("<rect") == 2
    assert "a&lt;" in svg and "T&amp;" in svg and "#1f1f1f" in svg
    with pytest.raises(ValueError):
        bar_chart([], [], title="", x_label="", y_label="")


# -- a year's worth -------------------------------------------------------------------------

def synthetic_year(cameras: int, days: int, per_day: int) -> Iterator[dict[str, Any]]:
    """Per camera and day: a hand-out, ``per_day`` recordings, a hand-in; every 10th day a
    readiness failure, every 50th recording late; one open gap per camera and month."""
    n = 0
    for day in range(days):
        month, mday = 1 + day * 12 // days, 1 + day % 28
        date = f"2026-{month:02d}-{mday:02d}T"
        for c in range(cameras):
            cam, officer = f"{c:032x}", f"officer-{c % 15}"
            yield rec("hand_out", date + "06:00:00.000Z", camera_uid=cam, officer_id=officer,
                      handout_id=f"h{day}-{c}", ready=True, reasons=[])
            if day % 10 == c % 10:
                yield rec("readiness_failure", date + "05:59:00.000Z", camera_uid=cam,
                          officer_id=officer, reasons=["battery_low"])
            if mday == 1:
                yield gap(date + "12:00:00.000Z", f"g{day}-{c}", cam, officer)
            for i in range(per_day):
                n += 1
                late = n % 50 == 0
                yield recording(date + f"18:{i % 60:02d}:00.000Z", cam, officer, duration_s=300,
                                delay_s=30 * HOUR if late else 2 * HOUR, rid=f"r{n}")
                if late:
                    yield rec("late_offload", date + "18:00:00.000Z", camera_uid=cam,
                              officer_id=officer, recording_id=f"r{n}", offload_delay_s=30 * HOUR)
            yield rec("hand_in", date + "18:00:00.000Z", camera_uid=cam, officer_id=officer)


def test_150k_records_one_pass() -> None:
    cameras, days, per_day = 20, 365, 19
    r = report(synthetic_year(cameras, days, per_day))
    recordings = cameras * days * per_day
    failures = sum(1 for d in range(days) for c in range(cameras) if d % 10 == c % 10)
    gaps = cameras * sum(1 for d in range(days) if d % 28 == 0)
    total = recordings + 2 * cameras * days + failures + gaps + recordings // 50
    assert total > 150_000
    assert r.records["in_year"] == total
    assert (r.fleet.recordings, r.fleet.hand_outs, r.fleet.hand_ins) == (
        recordings, cameras * days, cameras * days)
    assert r.fleet.hours_recorded == round(recordings * 300 / 3600, 3)
    assert r.fleet.late_offloads == recordings // 50 == r.offload_delay[3]
    assert r.offload_delay == [0, recordings - recordings // 50, 0, recordings // 50, 0]
    assert r.fleet.readiness_failures == failures == sum(r.readiness_per_month)
    assert r.fleet.gaps_open == gaps == len(r.open_gaps)
    assert len(r.cameras) == cameras and len(r.officers) == 15
    assert r.officers["officer-0"].recordings == 2 * days * per_day  # cameras 0 and 15
    for render in (render_json, render_csv, render_html):
        assert render(r)


def test_memory_does_not_grow_with_records() -> None:
    def peak(days: int) -> int:
        tracemalloc.start()
        try:
            report(synthetic_year(5, days, 10))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(20), peak(200)  # 10x the records (the gap list grows, a little)
    assert large < small + 64 * 1024, (small, large)
