"""Drives the durable outbox over the MQTT link: in order, rate-limited, until acknowledged.

An item is done when the console acknowledges its id on ``…/acks`` (``delivery = console-ack``)
or when the broker PUBACKs it with a success reason code (``delivery = puback``). Until then it
stays in the outbox and is sent again after a reconnect, a restart or ``resend_after_s``.
Retained status topics are kept here in memory and re-published on every reconnect.

A publish the broker *refuses* (MQTT 5 reason code ≥ 0x80, typically 0x87 "Not authorized" from
an ACL) is never counted as delivered, whatever ``delivery`` says: the item stays in the outbox
and is tried again after ``resend_after_s`` — not at once, since an ACL refusal repeats until
someone fixes the ACL or the dock's certificate. The reason is logged (WARNING, once per item)
and :attr:`Publisher.refused` counts refusals for the ``health`` payload and ``dock-agent
status``. Deliberately no event: it would be published under the same prefix, most likely be
refused for the same reason, and each refusal would queue another event — a loop that fills
the outbox with noise. A refusal limited to some topics does leave ``health`` to show it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .mqtt import MqttLink, PublishHandle
from .outbox import Outbox
from .topics import SCHEMA, encode

__all__ = ["Publisher"]

log = logging.getLogger(__name__)

_WINDOW = 64  # items in flight at once


class Publisher:
    def __init__(self, outbox: Outbox, *, delivery: str, rate_per_s: float,
                 resend_after_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._outbox = outbox
        self._delivery = delivery
        self._rate = rate_per_s
        self._resend_after = resend_after_s
        self._clock = clock
        self._link: MqttLink | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._in_flight: dict[str, float] = {}  # item id -> when sent
        self._outstanding: list[tuple[PublishHandle, str]] = []  # awaiting PUBACK
        self._retained: dict[str, bytes] = {}
        self._retained_dirty: set[str] = set()
        self._was_connected = False
        self._refused_ids: set[str] = set()  # items whose refusal was logged at WARNING
        self.refused = 0  # publishes the broker refused since start (health: publishes_refused)

    def attach(self, link: MqttLink) -> None:
        self._link = link

    # -- inputs from the daemon and from paho's thread ---------------------------------------

    def set_retained(self, topic: str, payload: dict[str, Any]) -> None:
        data = encode(payload)
        with self._lock:
            if self._retained.get(topic) == data:
                return
            self._retained[topic] = data
            self._retained_dirty.add(topic)
        self._wake.set()

    def poke(self) -> None:
        """Something was queued in the outbox."""
        self._wake.set()

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("ignoring non-JSON message on %s", topic)
            return
        if (not isinstance(message, dict) or message.get("type") != "ack"
                or message.get("schema") != SCHEMA
                or not isinstance(message.get("ids"), list)
                or not all(isinstance(i, str) for i in message["ids"])):
            log.warning("ignoring malformed ack on %s", topic)
            return
        ids = message["ids"]
        done = self._outbox.mark_done(ids)
        with self._lock:
            for item_id in ids:
                self._in_flight.pop(item_id, None)
                self._refused_ids.discard(item_id)
        log.info("acknowledged %d of %d ids", done, len(ids))
        self._wake.set()

    def on_publish_result(self, handle: PublishHandle) -> None:
        """Called from paho's thread: counts refusals (outbox items and retained statuses
        alike) and wakes the loop, which settles outbox handles itself."""
        if handle.refused:
            with self._lock:
                self.refused += 1
        self._wake.set()

    def _settle(self) -> None:
        with self._lock:
            resolved = [(h, i) for h, i in self._outstanding if h.ok is not None]
            self._outstanding = [(h, i) for h, i in self._outstanding if h.ok is None]
        for handle, item_id in resolved:
            if handle.ok:
                if self._delivery == "puback":
                    self._outbox.mark_done([item_id])
                    with self._lock:
                        self._in_flight.pop(item_id, None)
                        self._refused_ids.discard(item_id)
                continue
            if handle.refused:
                # Not delivered, and sending it again at once would be refused again: it
                # stays in flight, so that it is re-sent after resend_after_s.
                with self._lock:
                    first = item_id not in self._refused_ids
                    self._refused_ids.add(item_id)
                log.log(logging.WARNING if first else logging.DEBUG,
                        "outbox item %s refused by the broker on %s: %s; kept in the outbox, "
                        "retried every %g s", item_id, handle.topic, handle.reason,
                        self._resend_after)
                continue
            # Lost (connection gone, local queue full): forget it was sent so that it goes
            # out again as soon as the link allows.
            log.warning("publish of %s not delivered: %s", item_id, handle.reason)
            with self._lock:
                self._in_flight.pop(item_id, None)

    def flush_retained(self, timeout: float) -> None:
        """At shutdown, after the publisher loop stopped: send the last retained statuses (the
        cameras' final ``docked: false``) so the broker does not keep a stale picture."""
        link = self._link
        if link is None or not link.connected:
            return
        with self._lock:
            dirty = [(t, self._retained[t]) for t in self._retained_dirty]
            self._retained_dirty.clear()
        handles = [link.publish(t, data, qos=1, retain=True) for t, data in dirty]
        deadline = time.monotonic() + timeout
        for handle in handles:
            handle.wait(max(0.0, deadline - time.monotonic()))

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                self._tick(stop)
            except Exception:  # the loop must survive; the outbox keeps the data
                log.exception("publisher tick failed")
                stop.wait(1.0)

    def _tick(self, stop: threading.Event) -> None:
        self._settle()
        link = self._link
        if link is None:
            return
        connected = link.connected
        if not connected:
            if self._was_connected:
                with self._lock:
                    self._in_flight.clear()  # nothing sent on the old connection counts
            self._was_connected = False
            return
        if not self._was_connected:
            self._was_connected = True
            with self._lock:
                self._retained_dirty = set(self._retained)
        with self._lock:
            dirty = [(t, self._retained[t]) for t in self._retained_dirty]
            self._retained_dirty.clear()
        for topic, data in dirty:
            link.publish(topic, data, qos=1, retain=True)
        self._send_pending(link, stop)

    def _send_pending(self, link: MqttLink, stop: threading.Event) -> None:
        now = self._clock()
        interval = 1.0 / self._rate if self._rate > 0 else 0.0
        for item in self._outbox.pending(_WINDOW):
            if stop.is_set() or not link.connected:
                return
            with self._lock:
                sent = self._in_flight.get(item.item_id)
                if sent is not None and now - sent < self._resend_after:
                    continue
                self._in_flight[item.item_id] = now
            handle = link.publish(item.topic, encode(item.payload), qos=1)
            with self._lock:
                self._outstanding.append((handle, item.item_id))
            if interval:
                stop.wait(interval)
            now = self._clock()
