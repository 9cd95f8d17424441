"""``dock-agent`` subcommands for the rules (Art. 4, 12, 15-18): thin wrappers over
`agent.compliance`. Every command that touches footage or evidence is audited."""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .compliance.audit import cli_actor
from .compliance.service import HOLD_REASONS, Compliance, ComplianceError, ComplianceSettings
from .config import Config
from .publish.topics import iso_ms
from .registry import Registry
from .store.durable import atomic_write_bytes
from .store.footage import FootageStore
from .store.keys import KeyStore

__all__ = ["HANDLERS", "CliError", "add_parsers", "open_compliance"]


class CliError(Exception):
    pass


def settings_of(cfg: Config) -> ComplianceSettings:
    c = cfg.compliance
    return ComplianceSettings(dock_id=cfg.dock_id, gap_threshold_s=c.gap_threshold_s,
                              overdue_after_s=c.overdue_after_s,
                              retention_months=c.retention_months)


@contextmanager
def open_compliance(cfg: Config) -> Iterator[Compliance]:
    keys = KeyStore(cfg.state_dir, create=False)
    registry = Registry(cfg.state_dir / "state.json")
    book = Compliance(cfg.state_dir, settings_of(cfg),
                      store=FootageStore(cfg.state_dir / "footage", keys), registry=registry)
    try:
        yield book
    finally:
        book.close()
        registry.close()


def _day_ms(text: str, *, end: bool) -> int:
    """A DATE (YYYY-MM-DD, UTC) as unix ms: its first or (``end``) last millisecond."""
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise CliError(f"bad date {text!r}: expected YYYY-MM-DD") from None
    start = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
    return start + 86_400_000 - 1 if end else start


def _uid(text: str) -> bytes:
    try:
        uid = bytes.fromhex(text)
    except ValueError:
        uid = b""
    if len(uid) != 16:
        raise CliError(f"camera uid must be 32 hex digits, got {text!r}")
    return uid


def _rid(text: str) -> str:
    try:
        ok = len(bytes.fromhex(text)) == 16
    except ValueError:
        ok = False
    if not ok:
        raise CliError(f"recording id must be 32 hex digits, got {text!r}")
    return text.lower()


def _print_rows(rows: Iterable[dict[str, Any]], fmt: str, columns: list[str]) -> int:
    n = 0
    if fmt == "json":
        for row in rows:
            print(json.dumps(row, sort_keys=True))
            n += 1
        return n
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore",
                            delimiter="," if fmt == "csv" else "\t")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v
                         for k, v in row.items()})
        n += 1
    print(out.getvalue(), end="")
    return n


def _fmt(args: argparse.Namespace) -> str:
    return "json" if args.json else "csv" if args.csv else "text"


# -- subcommands -----------------------------------------------------------------------------

def cmd_assign(cfg: Config, args: argparse.Namespace) -> int:
    officer = None if args.unassign else args.officer
    if officer is None and not args.unassign:
        raise CliError("give --officer ID or --unassign")
    with open_compliance(cfg) as book:
        book.assign(_uid(args.camera_uid), officer, actor=cli_actor())
    print(f"camera {args.camera_uid} assigned to {officer or '(nobody)'}")
    return 0


_LEDGER_COLUMNS = ["at", "type", "camera_uid", "officer_id", "slot", "handout_id",
                   "battery_pct", "storage_free_bytes", "recording_id", "started_at",
                   "ended_at", "by"]


def cmd_ledger(cfg: Config, args: argparse.Namespace) -> int:
    now = time.time_ns() // 1_000_000
    to_ms = _day_ms(args.to, end=True) if args.to else now
    if args.from_:
        from_ms = _day_ms(args.from_, end=False)
    else:  # default: the current month so far
        t = datetime.fromtimestamp(to_ms / 1000, UTC)
        from_ms = int(datetime(t.year, t.month, 1, tzinfo=UTC).timestamp() * 1000)
    if from_ms > to_ms:
        raise CliError("--from is after --to")
    with open_compliance(cfg) as book:
        rows = book.ledger(camera_uid=_uid(args.camera).hex() if args.camera else None,
                           officer_id=args.officer, from_ms=from_ms, to_ms=to_ms)
        _print_rows(rows, _fmt(args), _LEDGER_COLUMNS)
    return 0


_GAP_COLUMNS = ["gap_id", "camera_uid", "officer_id", "kind", "from", "to", "duration_s",
                "before_recording", "after_recording", "status"]


def cmd_gaps(cfg: Config, args: argparse.Namespace) -> int:
    with open_compliance(cfg) as book:
        n = _print_rows(book.state.open_gaps(), _fmt(args), _GAP_COLUMNS)
    if not args.json and not args.csv:
        print(f"{n} open gap(s): each needs a work record (Art. 12)")
    return 0


_EXPIRED_COLUMNS = ["recording_id", "camera_uid", "officer_id", "started_at", "expires_at",
                    "size", "sha256", "held"]


def cmd_retention(cfg: Config, args: argparse.Namespace) -> int:
    if not args.expired:
        raise CliError("nothing to do: use --expired to list purge candidates")
    with open_compliance(cfg) as book:
        _print_rows(book.expired(), _fmt(args), _EXPIRED_COLUMNS)
    return 0


def cmd_hold(cfg: Config, args: argparse.Namespace) -> int:
    ids = [_rid(r) for r in args.recording_ids]
    with open_compliance(cfg) as book:
        book.hold(ids, reason=args.reason, text=args.text, actor=cli_actor())
    print(f"{len(ids)} recording(s) under legal hold ({args.reason})")
    return 0


def cmd_unhold(cfg: Config, args: argparse.Namespace) -> int:
    ids = [_rid(r) for r in args.recording_ids]
    with open_compliance(cfg) as book:
        book.unhold(ids, text=args.text, actor=cli_actor())
    print(f"hold lifted on {len(ids)} recording(s)")
    return 0


def cmd_audit(cfg: Config, args: argparse.Namespace) -> int:
    with open_compliance(cfg) as book:
        if args.action == "verify":
            n_audit = book.audit.verify()
            n_records = book.records.verify()
            seq, head = book.audit.head()
            print(f"audit log OK: {n_audit} entries, head {seq} {head}")
            print(f"compliance records OK: {n_records} records")
            return 0
        for entry in book.audit.journal.read():
            print(json.dumps(entry, sort_keys=True))
    return 0


def cmd_preserve(cfg: Config, args: argparse.Namespace) -> int:
    from .compliance.preserve import Label, PreservationError, preserve

    rids = [bytes.fromhex(_rid(r)) for r in args.recording_ids]
    with open_compliance(cfg) as book:
        keys = book.store.keys
        try:
            label = Label(producing_unit=args.unit or cfg.unit, producer=args.producer,
                          produced_at=iso_ms(time.time_ns() // 1_000_000),
                          case_name=args.case_name, case_number=args.case_number)
            copies = preserve(
                book.store, rids, label, [Path(p) for p in args.out], fmt=args.format,
                dock_public_key=keys.public_key_raw, dock_id=cfg.dock_id,
                camera_public_keys={r.camera_uid: r.public_key.public_bytes_raw()
                                    for r in book.registry.cameras()})
        except PreservationError as exc:
            book.audit.append("preserve", cli_actor(), recording_ids=[r.hex() for r in rids],
                              case_number=args.case_number, outcome="failed",
                              error=str(exc))
            raise CliError(str(exc)) from None
        book.audit.append("preserve", cli_actor(), recording_ids=[r.hex() for r in rids],
                          case_number=args.case_number, case_name=args.case_name,
                          producer=args.producer, outcome="ok",
                          copies=[{"path": str(c.path), "format": c.fmt,
                                   "image_sha256": c.image_sha256} for c in copies])
    for c in copies:
        print(f"copy {c.copy_number}: {c.path} verified")
    return 0


def cmd_report(cfg: Config, args: argparse.Namespace) -> int:
    from .compliance.report import build_report, render_csv, render_html, render_json

    year = args.year
    if not 2000 <= year <= 9999:
        raise CliError(f"--year {year}: expected a four-digit year")
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp() * 1000) - 1
    with open_compliance(cfg) as book:
        report = build_report(book.records.read_range(start, end), year=year,
                              dock_id=cfg.dock_id, unit=cfg.unit,
                              generated_at=iso_ms(time.time_ns() // 1_000_000),
                              open_gaps=book.state.open_gaps())
    render = {"json": render_json, "csv": render_csv, "html": render_html}[args.format]
    text = render(report)
    if args.out:
        out = Path(args.out)
        if out.exists():
            raise CliError(f"{out} exists; refusing to overwrite")
        atomic_write_bytes(out, text.encode())
        print(f"report {year} written to {out}")
    else:
        print(text, end="")
    return 0


# -- parsing ---------------------------------------------------------------------------------

Handler = Callable[[Config, argparse.Namespace], int]

HANDLERS: dict[str, Handler] = {
    "assign": cmd_assign, "ledger": cmd_ledger, "gaps": cmd_gaps, "retention": cmd_retention,
    "hold": cmd_hold, "unhold": cmd_unhold, "audit": cmd_audit, "preserve": cmd_preserve,
    "report": cmd_report,
}


def _formats(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object per line")
    g.add_argument("--csv", action="store_true")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    a = sub.add_parser("assign", parents=[common], help="assign a camera to an officer (Art. 4)")
    a.add_argument("--camera-uid", required=True)
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--officer")
    g.add_argument("--unassign", action="store_true")
    led = sub.add_parser("ledger", parents=[common], help="usage ledger (Art. 4)")
    led.add_argument("--camera")
    led.add_argument("--officer")
    led.add_argument("--from", dest="from_", metavar="DATE", help="YYYY-MM-DD (UTC)")
    led.add_argument("--to", metavar="DATE", help="YYYY-MM-DD (UTC), inclusive")
    _formats(led)
    gp = sub.add_parser("gaps", parents=[common], help="open recording gaps (Art. 8, 12)")
    _formats(gp)
    r = sub.add_parser("retention", parents=[common], help="retention (Art. 15)")
    r.add_argument("--expired", action="store_true", help="list recordings past retention")
    _formats(r)
    h = sub.add_parser("hold", parents=[common], help="legal hold (Art. 16)")
    h.add_argument("recording_ids", nargs="+", metavar="RECORDING_ID")
    h.add_argument("--reason", required=True, choices=HOLD_REASONS)
    h.add_argument("--text", required=True, help="case reference / why")
    u = sub.add_parser("unhold", parents=[common], help="lift a legal hold")
    u.add_argument("recording_ids", nargs="+", metavar="RECORDING_ID")
    u.add_argument("--text", required=True, help="why the hold ends")
    au = sub.add_parser("audit", parents=[common], help="audit log (Art. 18)")
    au.add_argument("action", choices=("verify", "show"))
    pr = sub.add_parser("preserve", parents=[common],
                        help="two verified preservation copies (Art. 16)")
    pr.add_argument("recording_ids", nargs="+", metavar="RECORDING_ID")
    pr.add_argument("--case-name", required=True)
    pr.add_argument("--case-number", required=True)
    pr.add_argument("--producer", required=True, help="who makes the copies")
    pr.add_argument("--unit", help="producing unit (default: the dock's unit)")
    pr.add_argument("--out", action="append", required=True, metavar="DIR",
                    help="give twice: one directory per copy, ideally on different media")
    pr.add_argument("--format", choices=("iso", "dir"), default="iso")
    rp = sub.add_parser("report", parents=[common], help="annual review (Art. 17)")
    rp.add_argument("--year", type=int, required=True)
    rp.add_argument("--format", choices=("json", "csv", "html"), default="json")
    rp.add_argument("--out", help="write to this file (default: stdout)")


ERRORS = (CliError, ComplianceError)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ComplianceError):
        return f"{exc.reason} ({exc.code})"
    return str(exc)

