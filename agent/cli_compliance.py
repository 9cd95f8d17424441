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
from typing import Any

from .compliance.audit import cli_actor
from .compliance.service import HOLD_REASONS, Compliance, ComplianceError, ComplianceSettings
from .config import Config
from .registry import Registry
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


# -- parsing ---------------------------------------------------------------------------------

Handler = Callable[[Config, argparse.Namespace], int]

HANDLERS: dict[str, Handler] = {
    "assign": cmd_assign, "ledger": cmd_ledger, "gaps": cmd_gaps, "retention": cmd_retention,
    "hold": cmd_hold, "unhold": cmd_unhold, "audit": cmd_audit,
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


ERRORS = (CliError, ComplianceError)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ComplianceError):
        return f"{exc.reason} ({exc.code})"
    return str(exc)

