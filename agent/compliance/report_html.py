"""The annual review (Art. 17) as one printable HTML page: tables, plots as inline SVG, no script.

A legal office prints it or files it as is, so the page carries everything itself: the styles are
inline, the plots are hand-drawn SVG (:mod:`agent.compliance.charts`), nothing refers to another
file or host, and every text from the records is escaped. ``@media print`` and ``@page`` lay it
out on A4 landscape with the table headers repeated on every page.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from agent import __version__
from agent.compliance.charts import bar_chart
from agent.compliance.report import (
    DELAY_LABELS,
    SCHEMA,
    UNASSIGNED,
    UNKNOWN,
    Report,
    Tally,
    _count_real,
    _sorted_ids,
    _sorted_reasons,
)

__all__ = ["render_html"]

_LATE_BUCKETS = (3, 4)  # stored more than 24 h after the recording ended (Art. 13)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_CSS = """
body { font: 10pt/1.35 "DejaVu Sans", Arial, sans-serif; color: #000; margin: 2em; }
h1 { font-size: 16pt; margin: 0 0 .4em; } h2 { font-size: 12.5pt; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; margin: .3em 0 1em; }
th, td { border: 1px solid #888; padding: 2px 6px; vertical-align: top; }
th { background: #eee; text-align: left; } td.n { text-align: right; }
table.wide { width: 100%; font-size: 8.5pt; } tr.total td { font-weight: bold; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5em; } figure { margin: 0; }
figcaption, .note { font-size: 8.5pt; color: #333; } .alert { font-weight: bold; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; } h2 { break-after: avoid; } thead { display: table-header-group; }
  tr, figure { break-inside: avoid; } section.break { break-before: page; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

_HTML_COLUMNS = (("Hand-outs", "hand_outs"), ("Hand-ins", "hand_ins"),
                 ("Recordings", "recordings"), ("Hours", "hours_recorded"),
                 ("Readiness failures", "readiness_failures"), ("Late offloads", "late_offloads"),
                 ("Max delay (h)", "max_offload_delay_h"), ("Overdue", "overdue"),
                 ("Gaps", "gaps"), ("explained", "gaps_explained"),
                 ("closed by work record", "gaps_closed"), ("open", "gaps_open"),
                 ("Integrity alerts", "integrity_alerts"), ("Holds", "holds"),
                 ("Unholds", "unholds"), ("Purges", "purges"))


def _e(value: object) -> str:
    return escape("—" if value is None else str(value))


def _reasons_text(t: Tally) -> str:
    return ", ".join(f"{r} {t.readiness_reasons[r]}" for r in _sorted_reasons(t.readiness_reasons))


def _tally_table(title: str, table: Mapping[str, Tally], fleet: Tally, *,
                 natural: bool = False) -> list[str]:
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in _HTML_COLUMNS)
    out = [f'<table class="wide"><thead><tr><th>{_e(title)}</th>{head}'
           "<th>Readiness failures by reason</th></tr></thead><tbody>"]
    rows = [(k, table[k], "") for k in _sorted_ids(table, natural=natural)]
    for key, t, cls in [*rows, ("Total", fleet, ' class="total"')]:
        d = t.to_dict()
        d["hours_recorded"] = round(t.recorded_s / 3600, 1)
        d["max_offload_delay_h"] = round(t.max_offload_delay_s / 3600, 1)
        cells = "".join(f'<td class="n">{_e(d[c])}</td>' for _, c in _HTML_COLUMNS)
        out.append(f'<tr{cls}><td>{_e(key)}</td>{cells}'
                   f"<td>{_e(_reasons_text(t))}</td></tr>")
    out.append("</tbody></table>")
    return out


def _summary(r: Report) -> list[str]:
    f = r.fleet
    rows = (("Cameras", _count_real(r.cameras)), ("Officers", _count_real(r.officers)),
            ("Hand-outs (not ready when handed out)", f"{f.hand_outs} ({f.hand_outs_not_ready})"),
            ("Recordings stored", f.recordings), ("Hours recorded", round(f.recorded_s / 3600, 1)),
            ("Readiness failures (Art. 7)", f.readiness_failures),
            ("Late offloads, > 24 h (Art. 13)", f.late_offloads),
            ("Overdue cameras (Art. 13)", f.overdue),
            ("Gaps (Art. 8, 12): explained / closed by work record / open",
             f"{f.gaps}: {f.gaps_explained} / {f.gaps_closed} / {f.gaps_open}"),
            ("Open gaps listed below (incl. earlier years)", len(r.open_gaps)),
            ("Integrity alerts", f.integrity_alerts),
            ("Legal holds set / lifted (Art. 16)", f"{f.holds} / {f.unholds}"),
            ("Recordings purged (Art. 15)", f.purges),
            ("Work records filed (for gaps of earlier years)",
             f"{r.work_records['total']} ({r.work_records['for_earlier_gaps']})"))
    out = ["<table><tbody>"]
    out += [f"<tr><th>{_e(k)}</th><td class=\"n\">{_e(v)}</td></tr>" for k, v in rows]
    out.append("</tbody></table>")
    skipped = {k: v for k, v in r.records.items() if k not in ("in_year", "outside_year") and v}
    if skipped:
        text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in skipped.items())
        out.append(f'<p class="alert">Records skipped: {_e(text)}.</p>')
    return out


def _open_gaps(r: Report) -> list[str]:
    if not r.open_gaps:
        return ["<p>No open gaps.</p>"]
    out = ['<table class="wide"><thead><tr><th>Gap</th><th>Camera</th><th>Officer</th>'
           "<th>Kind</th><th>From</th><th>To</th><th>Minutes</th><th>Hand-out</th>"
           "<th>Recorded at</th></tr></thead><tbody>"]
    for g in r.open_gaps:
        minutes = None if g.duration_s is None else round(g.duration_s / 60, 1)
        opened = g.opened_at if g.in_year else f"{g.opened_at or '?'} (earlier year)"
        out.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in (
            g.gap_id, g.camera_uid, g.officer_id, g.kind, g.start, g.end, minutes, g.handout_id,
            opened)) + "</tr>")
    out.append("</tbody></table>")
    return out


def render_html(report: Report) -> str:
    """One self-contained, printable HTML page: no script, no external reference."""
    r = report
    title = f"Annual review (Art. 17): body-worn cameras, {r.year}"
    delay = bar_chart(DELAY_LABELS, r.offload_delay, title="Offload delay (recordings)",
                      x_label="time from end of recording to stored on the dock",
                      y_label="recordings", emphasis=_LATE_BUCKETS)
    months = bar_chart(_MONTHS, r.readiness_per_month, title=f"Readiness failures per month, "
                       f"{r.year}", x_label="month (UTC)", y_label="failures")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)} — {_e(r.dock_id)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1><table><tbody>",
        *(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in (
            ("Dock", r.dock_id), ("Unit", r.unit),
            ("Period (UTC)", f"{r.year}-01-01 00:00 to {r.year + 1}-01-01 00:00"),
            ("Generated", r.generated_at), ("Records counted", r.records["in_year"]))),
        "</tbody></table></header>",
        "<section><h2>Summary</h2>", *_summary(r), "</section>",
        '<section><h2>Figures</h2><div class="figures">',
        f"<figure>{delay}<figcaption>Dark bars: stored more than 24 h after the recording ended "
        f"(Art. 13). Without a delay: {r.offload_delay_unknown}.</figcaption></figure>",
        f"<figure>{months}<figcaption>Docked cameras found not ready for duty (Art. 7), by "
        "month of the check.</figcaption></figure></div></section>",
        '<section class="break"><h2>Per camera</h2>',
        *_tally_table("Camera", r.cameras, r.fleet), "</section>",
        '<section class="break"><h2>Per officer</h2>',
        *_tally_table("Officer", r.officers, r.fleet, natural=True), "</section>",
        "<section><h2>Open gaps (Art. 8, 12)</h2>", *_open_gaps(r), "</section>",
        '<section><h2>Notes</h2><p class="note">',
        "A record counts for the year of its time stamp (a recording: when it was stored). "
        f"{_e(UNASSIGNED)}: the camera had no officer assigned. {_e(UNKNOWN)}: the record names "
        "no officer (or camera); integrity alerts are attributed to the officer of the camera's "
        "latest hand-in, hand-out or recording. Gaps are explained automatically when the "
        "camera's own event log shows battery empty, storage full or a fault; otherwise they "
        "stay open until the officer's work record is filed. Holds, unholds and purges count "
        "records (one per recording).</p></section>",
        f'<footer class="note">bwc-dock {_e(__version__)} · report schema {SCHEMA}</footer>',
        "</body></html>", ""]
    return "\n".join(parts)
