"""``dock-agent keys``: the dock's footage wrapping key — ``show`` its id, ``rotate`` it
(`agent.rotation`). Key ids are the first 8 bytes of the key's SHA-256, not key material."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .compliance.audit import cli_actor
from .config import Config
from .rotation import rotate_wrap_key
from .store.keys import NEXT_WRAP_KEY_FILE, KeyStore

__all__ = ["HANDLERS", "add_parsers"]


def _progress(phase: str, count: int) -> None:
    if phase == "started":
        print("rewrapping recording keys ...", flush=True)
    elif phase == "rewrapped" and count % 1000 == 0:
        print(f"  {count} rewrapped", flush=True)


def cmd_keys(cfg: Config, args: argparse.Namespace) -> int:
    if args.action == "show":
        keys = KeyStore(cfg.state_dir, create=False)
        pending = (cfg.state_dir / NEXT_WRAP_KEY_FILE).exists()
        print(f"wrap_key_id={keys.wrap_key_id.hex()}"
              + (" rotation=interrupted (run `dock-agent keys rotate`)" if pending else ""))
        return 0
    done = rotate_wrap_key(cfg.state_dir, actor=cli_actor(), hook=_progress)
    if done.resumed:
        print("resumed an interrupted rotation")
    print(f"rewrapped {done.rewrapped} of {done.recordings} recording keys under "
          f"{done.new_key_id}; footage not rewritten")
    print(f"old wrapping key {done.old_key_id} "
          + ("destroyed" if done.old_key_overwritten else
             "removed (other links to its file remained, so it was not overwritten)"))
    print("back up the new wrap.key now (docs/operations.md §6)", file=sys.stderr)
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    k = sub.add_parser("keys", parents=[common], help="footage wrapping key: show, rotate")
    k.add_argument("action", choices=("show", "rotate"),
                   help="show: the key id; rotate: new key, every recording key rewrapped "
                        "(stop the agent first)")


HANDLERS = {"keys": cmd_keys}
