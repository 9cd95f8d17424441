"""``bwc-console cmd``: sign a command, publish it to one dock, print the dock's answer.

The answer is the dock's ``cmd_result`` with the command's ``request_id`` (docs/compliance.md).
Exit status: 0 the dock carried it out, 1 the dock refused it (``error`` says why), 2 no answer
within the timeout (or the dock was never seen, or the broker is unreachable). Without
``--unit`` the dock's unit is read from its retained ``…/identity``. ``cmd`` does not
acknowledge the result: ``bwc-console ingest`` stores and acknowledges command results.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from .commands import build_command, encode_command
from .keys import load_signing_key
from .mqtt import Link
from .wire import parse_topic

__all__ = ["EXIT_NO_ANSWER", "EXIT_OK", "EXIT_REFUSED", "run_cmd"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_REFUSED, EXIT_NO_ANSWER = 0, 1, 2


class _Answers:
    def __init__(self, dock_id: str) -> None:
        self.dock_id = dock_id
        self.cond = threading.Condition()
        self.units: set[str] = set()
        self.results: dict[str, dict[str, Any]] = {}

    def on_message(self, topic_name: str, raw: bytes, _retain: bool) -> None:
        topic = parse_topic(topic_name)
        if topic is None or topic.dock_id != self.dock_id:
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        with self.cond:
            if topic.kind == "identity":
                self.units.add(topic.unit)
            elif topic.kind == "cmd_result" and isinstance(payload.get("request_id"), str):
                self.results.setdefault(payload["request_id"], payload)
            self.cond.notify_all()


def run_cmd(*, broker: str, dock_id: str, command: str, args: Mapping[str, Any], key: Path,
            unit: str | None, timeout: float, out: TextIO, ca_file: str | None = None) -> int:
    signing_key = load_signing_key(key)
    answers = _Answers(dock_id)
    filters = [f"bwc/{unit or '+'}/{dock_id}/identity", f"bwc/{unit or '+'}/{dock_id}/cmd_result"]
    deadline = time.monotonic() + timeout
    link = Link(broker, filters, answers.on_message, role="cmd", ca_file=ca_file).start(timeout)
    try:
        if unit is None:
            link.sync(max(deadline - time.monotonic(), 0.1))
            with answers.cond:
                units = sorted(answers.units)
            if len(units) != 1:
                log.error("dock %s: %s; give --unit", dock_id,
                          "never seen (no retained identity)" if not units
                          else f"seen in several units {units}")
                return EXIT_NO_ANSWER
            unit = units[0]
        doc = build_command(signing_key, command=command, dock_id=dock_id, args=args)
        topic = f"bwc/{unit}/{dock_id}/cmd/{command}"
        if not link.publish(topic, encode_command(doc), wait=max(deadline - time.monotonic(),
                                                                 0.1)):
            log.error("the broker did not accept the command on %s", topic)
            return EXIT_NO_ANSWER
        log.info("published %s %s to %s", command, doc["request_id"], topic)
        with answers.cond:
            answered = answers.cond.wait_for(
                lambda: doc["request_id"] in answers.results,
                max(deadline - time.monotonic(), 0))
            result = answers.results.get(doc["request_id"])
        if not answered or result is None:
            log.error("no cmd_result for %s within %g s", doc["request_id"], timeout)
            return EXIT_NO_ANSWER
        out.write(json.dumps(result, sort_keys=True) + "\n")
        out.flush()
        return EXIT_OK if result.get("ok") is True else EXIT_REFUSED
    finally:
        link.stop()
