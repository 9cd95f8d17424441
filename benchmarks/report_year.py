"""Annual report (Art. 17) for one busy year vs just parsing the journal lines (issue 5 figure).

A synthetic year of compliance records (20 cameras x 40 recordings a day, a hand-out and a
hand-in per camera and day, plus readiness failures, late offloads, gaps and work records,
integrity failures, overdue cameras, holds and purges) is written once as canonical, hash-chained
JSON lines to a temp file. Timed, best of ``--rounds``, in the same run:

* ``baseline``: read the file and ``json.loads`` every line (the least any journal reader does);
* ``report``: the same reading, streamed into ``build_report``, then ``render_json``,
  ``render_csv`` and ``render_html`` of the result.

Prints JSON lines: both timings (with the build and each render on its own), the ratio of report
to baseline, and the target (the whole report for one year in at most 60 s). The journal reader
itself (``agent.store.journal``) is not part of this: the lead's CLI feeds its records in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.compliance.report import build_report, render_csv, render_html, render_json

YEAR = 2026


def _ts(day: datetime, seconds: float) -> str:
    t = day + timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def synthetic_year(cameras: int, per_day: int, days: int,
                   seed: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(YEAR, 1, 1, tzinfo=UTC)
    officers = [f"officer-{i:03d}" for i in range(cameras * 3 // 2)]
    n = 0
    for d in range(days):
        day = start + timedelta(days=d)
        for c in range(cameras):
            cam = f"{0xC0FFEE << 104 | c:032x}"
            officer = None if rng.random() < 0.01 else rng.choice(officers)
            handout = f"{d:04x}{c:04x}" + "0" * 24
            common = {"camera_uid": cam, "officer_id": officer}
            if rng.random() < 0.05:
                yield {"type": "readiness_failure", "at": _ts(day, 6 * 3600 - 60), **common,
                       "slot": c, "reasons": rng.sample(
                           ["battery_low", "storage_low", "clock_unsynced", "footage_pending"],
                           rng.randint(1, 2))}
            yield {"type": "hand_out", "at": _ts(day, 6 * 3600), "handout_id": handout,
                   **common, "slot": c, "battery_pct": 100, "storage_free_bytes": 64 << 30,
                   "ready": True, "reasons": []}
            t = 6 * 3600.0
            for i in range(per_day):
                n += 1
                rid = f"{n:032x}"
                duration = rng.randint(60, 900)
                ended = t + duration
                late = rng.random() < 0.02
                on_time = max(60, 19 * 3600 - ended + i * 20)  # offloaded after the hand-in
                delay = rng.uniform(86400, 4 * 86400) if late else on_time
                stored = ended + delay
                yield {"type": "recording", "at": _ts(day, stored), "recording_id": rid,
                       "manifest_id": rid[::-1], **common, "handout_id": handout,
                       "media": "video", "started_at": _ts(day, t), "ended_at": _ts(day, ended),
                       "duration_s": duration, "size": duration * 1_000_000,
                       "sha256": hashlib.sha256(rid.encode()).hexdigest(),
                       "stored_at": _ts(day, stored), "offload_delay_s": round(delay),
                       "expires_at": _ts(day, 3653 * 86400)}
                if late:
                    yield {"type": "late_offload", "at": _ts(day, stored), **common,
                           "recording_id": rid, "manifest_id": rid[::-1],
                           "offload_delay_s": round(delay)}
                if rng.random() < 0.0005:
                    yield {"type": "integrity_failure", "at": _ts(day, stored), "camera_uid": cam,
                           "recording_id": f"{n:031x}f", "reason": "chunk_hash", "detail": ""}
                if rng.random() < 0.004:
                    gap_id = f"{n:032x}"
                    status = "explained" if rng.random() < 0.5 else "open"
                    yield {"type": "gap", "at": _ts(day, stored), "gap_id": gap_id, **common,
                           "handout_id": handout, "kind": "interruption", "from": _ts(day, ended),
                           "to": _ts(day, ended + 1200), "duration_s": 1200,
                           "before_recording": rid, "after_recording": None, "status": status,
                           "reason": 1 if status == "explained" else None, "evidence": []}
                    if status == "open" and rng.random() < 0.8:
                        yield {"type": "work_record", "at": _ts(day, stored + 3600),
                               "gap_id": gap_id, "reason": 2, "text": "report filed",
                               "approver": "sgt-1", "request_id": gap_id}
                if rng.random() < 0.0002:
                    yield {"type": "hold", "at": _ts(day, stored + 60), "recording_id": rid,
                           "reason": "dispute", "text": "complaint", "by": "console",
                           "request_id": rid}
                t = ended + rng.randint(60, 600)
            if rng.random() < 0.01:
                yield {"type": "overdue_camera", "at": _ts(day, 30 * 3600), **common,
                       "handout_id": handout, "out_since": _ts(day, 6 * 3600), "limit_s": 86400}
            yield {"type": "hand_in", "at": _ts(day, 19 * 3600), "handout_id": handout, **common,
                   "slot": c, "battery_pct": 30, "storage_free_bytes": 60 << 30,
                   "clock_offset_ms": rng.randint(-50, 50)}
        if d % 30 == 0:
            yield {"type": "purge", "at": _ts(day, 3 * 3600), "recording_id": "e" * 32,
                   "manifest_id": "f" * 32, "sha256": "0" * 64, "camera_uid": cam,
                   "started_at": "2016-01-01T00:00:00.000Z", "admin_id": "admin-1",
                   "reason": "expired", "request_id": f"p{d}"}


def write_journal(path: Path, records: Iterator[dict[str, Any]]) -> int:
    """Canonical JSON lines with ``seq`` and ``prev`` (SHA-256 of the previous line), like the
    compliance journal; returns the number of lines."""
    prev, seq = "0" * 64, 0
    with path.open("wb") as f:
        for record in records:
            seq += 1
            line = json.dumps({**record, "seq": seq, "prev": prev}, sort_keys=True,
                              separators=(",", ":")).encode() + b"\n"
            f.write(line)
            prev = hashlib.sha256(line[:-1]).hexdigest()
    return seq


def read(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for line in f:
            yield json.loads(line)


def baseline(path: Path) -> int:
    n = 0
    for _ in read(path):
        n += 1
    return n


def report(path: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    r = build_report(read(path), year=YEAR, dock_id="dock-01", unit="zhanhe-legal",
                     generated_at="2027-01-02T08:00:00.000Z")
    t1 = time.perf_counter()
    sizes = {}
    times = {}
    for name, render in (("json", render_json), ("csv", render_csv), ("html", render_html)):
        t = time.perf_counter()
        sizes[name] = len(render(r).encode())
        times[f"render_{name}_s"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    assert r.records["malformed"] == r.records["unknown_type"] == 0, r.records
    return {"seconds": total, "build_s": t1 - t0, **times, "records": r.records["in_year"],
            "outside_year": r.records["outside_year"],
            "recordings": r.fleet.recordings, **{f"{k}_bytes": v for k, v in sizes.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--per-day", type=int, default=40, help="recordings per camera and day")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bwc-report-") as tmp:
        path = Path(tmp) / "records.jsonl"
        lines = write_journal(path, synthetic_year(args.cameras, args.per_day, args.days))
        common = {"bench": "report_year", "cameras": args.cameras, "per_day": args.per_day,
                  "days": args.days, "lines": lines, "mib": round(path.stat().st_size / 2**20, 1)}
        best_base = float("inf")
        baseline(path)  # warm-up: page cache, allocator
        best: dict[str, float] | None = None
        for _ in range(args.rounds):
            t = time.perf_counter()
            assert baseline(path) == lines
            best_base = min(best_base, time.perf_counter() - t)
            result = report(path)
            if best is None or result["seconds"] < best["seconds"]:
                best = result
        assert best is not None and best["records"] + best["outside_year"] == lines
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**common, "what": "baseline_json_loads", "seconds": round(best_base, 3)}))
    print(json.dumps({**common, "what": "report_build_and_render",
                      **{k: round(v, 3) if isinstance(v, float) else v for k, v in best.items()},
                      "max_rss_mib": round(rss_mib, 1)}))
    print(json.dumps({**common, "what": "ratio_report_to_baseline",
                      "ratio": round(best["seconds"] / best_base, 3),
                      "report_seconds": round(best["seconds"], 3), "target_seconds": 60}))


if __name__ == "__main__":
    main()
