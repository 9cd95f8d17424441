"""The annual review as JSON, CSV or one self-contained HTML page (docs/compliance.md,
"Formats"; the console's HTML is its own, simpler page with the same tables and figures)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from html import escape

from .report_model import (
    DELAY_LABELS,
    UNASSIGNED,
    UNKNOWN,
    Report,
    Tally,
    count_real,
    sorted_ids,
    sorted_reasons,
)

__all__ = ["render", "render_csv", "render_html", "render_json"]

_CSV_COLUMNS = ("hand_outs", "hand_outs_not_ready", "hand_ins", "assignments", "recordings",
                "hours_recorded", "stored_bytes", "max_offload_delay_s", "late_offloads",
                "overdue", "readiness_failures")
_CSV_TAIL = ("gaps", "gaps_explained", "gaps_closed", "gaps_open", "integrity_alerts", "holds",
             "unholds", "purges")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LATE = (3, 4)  # the offload-delay buckets over 24 h (Art. 13)


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _cell(text: str) -> str:
    """No id may start a spreadsheet formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_csv(report: Report) -> str:
    reasons = sorted_reasons(report.fleet.readiness_reasons)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(("scope", "id", *_CSV_COLUMNS, *(f"readiness:{r}" for r in reasons), *_CSV_TAIL))
    rows = [("camera", k, report.cameras[k]) for k in sorted_ids(report.cameras)]
    rows += [("officer", k, report.officers[k]) for k in sorted_ids(report.officers, natural=True)]
    rows.append(("fleet", "", report.fleet))
    for scope, key, t in rows:
        d = t.to_dict()
        w.writerow((scope, _cell(key), *(d[c] for c in _CSV_COLUMNS),
                    *(t.readiness_reasons.get(r, 0) for r in reasons), *(d[c] for c in _CSV_TAIL)))
    return out.getvalue()


def _e(value: object) -> str:
    return escape("—" if value is None else str(value))


def _bars(title: str, labels: Sequence[str], values: Sequence[int],
          dark: Sequence[int] = ()) -> str:
    """A plain inline SVG bar chart (no script, no external reference)."""
    width, height, left, base = 480, 220, 40, 180
    top = max(max(values, default=0), 1)
    slot = (width - left - 10) / len(values)
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{_e(title)}"><title>{_e(title)}</title>',
           f'<text x="{width / 2:.0f}" y="14" text-anchor="middle" font-size="12" '
           f'font-weight="bold">{_e(title)}</text>',
           f'<text x="{left - 4}" y="34" text-anchor="end" font-size="10">{top}</text>']
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = value / top * (base - 30)
        x = left + i * slot + slot * 0.15
        fill = "#1f1f1f" if i in dark else "#7a7a7a"
        out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{slot * 0.7:.1f}" '
                   f'height="{h:.1f}" fill="{fill}"><title>{_e(label)}: {value}</title></rect>'
                   f'<text x="{x + slot * 0.35:.1f}" y="{base - h - 3:.1f}" text-anchor="middle" '
                   f'font-size="10">{value}</text><text x="{x + slot * 0.35:.1f}" '
                   f'y="{base + 14}" text-anchor="middle" font-size="10">{_e(label)}</text>')
    out.append(f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#000"/>'
               "</svg>")
    return "".join(out)


_COLUMNS = (("Hand-outs", "hand_outs"), ("not ready", "hand_outs_not_ready"),
            ("Hand-ins", "hand_ins"), ("Recordings", "recordings"),
            ("Hours", "hours_recorded"), ("Readiness failures", "readiness_failures"),
            ("Late offloads", "late_offloads"), ("Overdue", "overdue"), ("Gaps", "gaps"),
            ("explained", "gaps_explained"), ("closed", "gaps_closed"), ("open", "gaps_open"),
            ("Integrity alerts", "integrity_alerts"), ("Holds", "holds"),
            ("Unholds", "unholds"), ("Purges", "purges"))


def _tally_table(title: str, table: Mapping[str, Tally], fleet: Tally, natural: bool) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in _COLUMNS)
    rows = [(k, table[k], "") for k in sorted_ids(table, natural=natural)]
    body = []
    for key, t, cls in [*rows, ("Total", fleet, ' class="total"')]:
        d = t.to_dict()
        reasons = ", ".join(f"{r} {n}" for r, n in d["readiness_reasons"].items())
        body.append(f"<tr{cls}><td>{_e(key)}</td>"
                    + "".join(f'<td class="n">{_e(d[c])}</td>' for _, c in _COLUMNS)
                    + f"<td>{_e(reasons)}</td></tr>")
    return (f"<table><thead><tr><th>{_e(title)}</th>{head}<th>Readiness reasons</th></tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table>")


def render_html(report: Report) -> str:
    r, f = report, report.fleet
    title = f"Annual review (Art. 17): body-worn cameras, {r.year}"
    summary = (("Docks", ", ".join(r.docks) or "—"), ("Unit", r.unit),
               ("Generated", r.generated_at), ("Records counted", r.records["in_year"]),
               ("Cameras / officers", f"{count_real(r.cameras)} / {count_real(r.officers)}"),
               ("Recordings stored", f.recordings), ("Hours recorded", f.hours_recorded),
               ("Late offloads, > 24 h (Art. 13)", f.late_offloads),
               ("Gaps: explained / closed / open",
                f"{f.gaps}: {f.gaps_explained} / {f.gaps_closed} / {f.gaps_open}"),
               ("Integrity alerts", f.integrity_alerts),
               ("Holds / unholds / purges", f"{f.holds} / {f.unholds} / {f.purges}"))
    gaps = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in (
        g.gap_id, g.camera_uid, g.officer_id, g.kind, g.start, g.end, g.duration_s,
        g.opened_at if g.in_year else f"{g.opened_at} (earlier year)")) + "</tr>"
        for g in r.open_gaps)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>body{{font:10pt sans-serif;margin:2em}}"
        "table{border-collapse:collapse;margin:.3em 0 1em}th,td{border:1px solid #888;"
        "padding:2px 6px}th{background:#eee;text-align:left}td.n{text-align:right}"
        "tr.total td{font-weight:bold}@page{size:A4 landscape;margin:12mm}"
        "@media print{thead{display:table-header-group}tr{break-inside:avoid}}</style>"
        "</head><body>", f"<h1>{_e(title)}</h1>",
        "<table><tbody>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                                   for k, v in summary) + "</tbody></table>",
        _bars("Offload delay (recordings)", DELAY_LABELS, r.offload_delay, _LATE),
        _bars(f"Readiness failures per month, {r.year}", _MONTHS, r.readiness_per_month),
        "<h2>Per camera</h2>", _tally_table("Camera", r.cameras, f, False),
        "<h2>Per officer</h2>", _tally_table("Officer", r.officers, f, True),
        "<h2>Open gaps (Art. 8, 12)</h2>",
        ("<table><thead><tr><th>Gap</th><th>Camera</th><th>Officer</th><th>Kind</th>"
         "<th>From</th><th>To</th><th>Seconds</th><th>Recorded at</th></tr></thead>"
         f"<tbody>{gaps}</tbody></table>") if gaps else "<p>No open gaps.</p>",
        f"<p>{_e(UNASSIGNED)}: no officer assigned. {_e(UNKNOWN)}: the record names no officer "
        "(or camera). Counted by the central console from the ledger records it verified and "
        "stored.</p>", "</body></html>", ""]
    return "\n".join(parts)


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report)
    raise ValueError(f"unknown format {fmt!r}")
