"""The dock agent: state, MQTT link, hot-plug and one session per docked camera.

State directory layout (all 0700/0600, owned by the service user)::

    dock_key.pem, wrap.key      the dock's signing key and footage wrapping key
    state.json                  TinyDB: enrolled cameras, small bookkeeping
    footage/                    encrypted recordings (partial/, recordings/, quarantine/)
    outbox/                     durable queue of manifests and events until acknowledged
    journal/sessions/           append-only record of every session step
    journal/records/, journal/audit/, compliance.json, command_nonces.json
                                the rules' records (docs/compliance.md)
    status.json                 the latest status summary, for `dock-agent status`
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from . import __version__, systemd
from .cli_compliance import settings_of
from .compliance.commands import CommandAuthenticator, NonceStore, load_console_keys
from .compliance.dispatch import CommandDispatcher
from .compliance.loop import ComplianceLoop
from .compliance.service import Compliance
from .config import Config, ConfigError
from .health import health_payload
from .memory import tune_malloc
from .offload import OffloadStopped
from .publish.mqtt import MqttLink, RetainedMessage, TlsSettings, WillMessage
from .publish.outbox import Outbox
from .publish.publisher import Publisher
from .publish.topics import SCHEMA, Topics, encode, event_payload, iso_now
from .registry import Registry
from .session import SessionOutcome, run_session
from .slots import Device, OffloadSlots, SlotManager, SlotWatch
from .store.durable import atomic_write_json, ensure_dir
from .store.errors import StoreError
from .store.footage import FootageStore
from .store.journal import Journal
from .store.keys import KeyStore
from .transports.base import Transport, TransportError
from .transports.discovery import SerialDiscovery
from .transports.serial import SerialTransport
from .transports.usb import UsbDiscovery, UsbTransport, load_backend

__all__ = ["Agent", "StatePaths"]

log = logging.getLogger(__name__)

_SCAN_INTERVAL_S = 0.25
_SPACE_POLL_S = 1.0


class StatePaths:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self.registry = state_dir / "state.json"
        self.footage = state_dir / "footage"
        self.outbox = state_dir / "outbox"
        self.sessions = state_dir / "journal" / "sessions"
        self.status = state_dir / "status.json"


class Agent:
    """Implements ``SessionHost`` for the sessions it runs."""

    def __init__(self, config: Config) -> None:
        config.check_files()
        self.config = config
        self.paths = StatePaths(config.state_dir)
        ensure_dir(self.paths.root)
        self.keys = KeyStore(self.paths.root)
        self.signing_key = self.keys.signing_key
        self.keys.wrap_key_id  # noqa: B018 - create both keys at start, so a backup has both
        self.registry = Registry(self.paths.registry)
        self.store = FootageStore(self.paths.footage, self.keys)
        self.outbox = Outbox(self.paths.outbox)
        self.sessions_journal = Journal(self.paths.sessions)
        self.compliance = Compliance(self.paths.root, settings_of(config), store=self.store,
                                     registry=self.registry)
        max_age = config.compliance.command_max_age_s
        self.commands = CommandDispatcher(
            self.compliance, CommandAuthenticator(
                config.dock_id, load_console_keys(config.console_public_keys), max_age,
                NonceStore(self.paths.root / "command_nonces.json", max_age)),
            dock_id=config.dock_id, event=self.event)
        self._command_queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=256)
        self.topics = Topics(config.topic_prefix_resolved)
        self.offload_slots = OffloadSlots(config.max_concurrent_offloads)
        self.stopping = threading.Event()
        self.publisher = Publisher(self.outbox, delivery=str(config.delivery),
                                   rate_per_s=config.outbox_rate_per_s)
        self.link: MqttLink | None = None
        self._journal_lock = threading.Lock()
        self._started = time.time()
        self._cameras: dict[str, dict[str, Any]] = {}
        self._cameras_lock = threading.Lock()
        self.slots = SlotManager(self._serve, self.session_crashed)
        self._usb: UsbDiscovery | None = None
        self._usb_retry_at = 0.0
        self._threads: list[threading.Thread] = []
        self.usb_problem: str | None = None
        self._space_lock = threading.Lock()
        self._store_low = False

    # -- start-up ----------------------------------------------------------------------------

    def start(self) -> None:
        tune_malloc()
        finished = self.store.recover()
        if finished:
            log.info("recovered %d interrupted finalisations", len(finished))
        self._requeue_unpublished()
        self.compliance.recover_purges()
        self._audit_config()
        self.compliance_loop = ComplianceLoop(
            self.compliance, dock_id=self.config.dock_id, signing_key=self.signing_key,
            queue_ledger=self._queue_ledger,
            set_audit_head=lambda head: self.publisher.set_retained(self.topics.audit_head,
                                                                    head),
            event=self.event)
        if self.config.broker:
            self.link = self._make_link()
            self.publisher.attach(self.link)
            self.link.start()
        else:
            log.info("no broker configured: everything waits in the outbox")
        self._spawn(self.publisher.run, self.stopping, name="publisher")
        self._spawn(self._health_loop, name="health")
        self._spawn(self._compliance_loop, name="compliance")
        self._spawn(self._command_loop, name="commands")
        systemd.ready()
        log.info("dock %s started (state %s)", self.config.dock_id, self.paths.root)

    def _requeue_unpublished(self) -> None:
        """Finish the step a crash may have cut: recording finalised, manifest not queued."""
        for manifest_id, rid in self.registry.unpublished():
            self.finish_stored(manifest_id, rid)

    def finish_stored(self, manifest_id: str, recording_id: bytes) -> bool:
        """Finish a recording a session finalised but could not see through (it died, or an
        I/O error hit right after the move into ``recordings/``): its compliance record if it
        lacks one, then its manifest into the outbox. Forgets the entry either way; returns
        whether the recording is stored (else its next offload finalises it again)."""
        stored = self.store.stored(recording_id)
        manifest = stored.manifest if stored else None
        done = manifest is not None and manifest.get("manifest_id") == manifest_id
        if done:
            assert manifest is not None
            self.compliance.recording_stored_once(manifest)
            self.outbox.put("manifest", self.topics.manifests, manifest, manifest_id)
            log.info("recording %s: finished an interrupted finalisation", recording_id.hex())
        self.registry.mark_published(manifest_id)
        self.publisher.poke()
        return done

    def _make_link(self) -> MqttLink:
        cfg = self.config
        tls = None
        if cfg.broker.startswith("mqtts://"):
            if cfg.tls.ca_file is None:  # load_config already refuses this; never guess
                raise ConfigError("mqtts:// needs a CA to verify the broker", "tls.ca_file")
            tls = TlsSettings(cfg.tls.ca_file, cfg.tls.cert_file, cfg.tls.key_file,
                              cfg.tls.key_password_file)
        state = self.topics.state
        return MqttLink(
            cfg.broker, f"bwc-dock-{cfg.dock_id}",
            will=WillMessage(state, encode(self._state_payload("offline"))),
            birth=[RetainedMessage(state, encode(self._state_payload("online"))),
                   RetainedMessage(self.topics.identity, encode(self.identity_payload()))],
            tls=tls, subscriptions=[self.topics.acks, self.topics.commands],
            on_message=self._on_message,
            on_publish_result=self.publisher.on_publish_result,
        )

    def _on_message(self, topic: str, payload: bytes) -> None:
        """paho's thread: acks are settled at once; commands wait for the command thread (a
        purge deletes files, which paho's network loop must not wait for)."""
        if not self.topics.is_command(topic):
            self.publisher.on_message(topic, payload)
            return
        try:
            self._command_queue.put_nowait((topic, payload))
        except queue.Full:
            # A flood the dock cannot keep up with: the console sees no result and may retry.
            log.warning("command queue full: dropping a command on %s", topic)

    def _command_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                topic, payload = self._command_queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._handle_command(topic, payload)
            except Exception:  # e.g. an I/O error: this command gets no result, the next one may
                log.exception("command on %s failed", topic)

    def _handle_command(self, topic: str, payload: bytes) -> None:
        result = self.commands.handle(topic, payload)
        if result["error"] == "replayed":
            return  # the first copy's result is the answer (docs/compliance.md)
        item_id = f"cmd_result:{result['request_id'] or os.urandom(8).hex()}"
        if not self.outbox.put("cmd_result", self.topics.cmd_result,
                               {**result, "id": item_id}, item_id):
            # The console reused a request_id whose earlier result is still unacknowledged:
            # the command ran (and is audited) but this answer cannot be told apart.
            log.warning("result of command %s not queued: request_id %s already has an "
                        "unacknowledged result", result["command"], result["request_id"])
        self.publisher.poke()

    def _compliance_loop(self) -> None:
        while True:
            try:
                self.compliance_loop.tick()
            except Exception:  # the records are durable; a failed tick is retried
                log.exception("compliance loop tick failed")
            if self.stopping.wait(1.0):
                return

    def _queue_ledger(self, batch: list[tuple[dict[str, Any], str]]) -> None:
        self.outbox.put_many(("ledger", self.topics.ledger, payload, item_id)
                             for payload, item_id in batch)
        self.publisher.poke()

    def _audit_config(self) -> None:
        """Audit a start with a configuration that differs from the last one audited."""
        text = json.dumps(dataclasses.asdict(self.config), sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if self.compliance.state.meta("config_sha256", None) != digest:
            self.compliance.audit.append("config_loaded", "daemon", config_sha256=digest)
            self.compliance.state.set_meta("config_sha256", digest)

    def _state_payload(self, state: str) -> dict[str, Any]:
        return {"type": "state", "schema": SCHEMA, "dock_id": self.config.dock_id,
                "state": state}

    def identity_payload(self) -> dict[str, Any]:
        return {"type": "identity", "schema": SCHEMA, "dock_id": self.config.dock_id,
                "unit": self.config.unit,
                "public_key": base64.b64encode(self.keys.public_key_raw).decode(),
                "agent_version": __version__}

    def _spawn(self, target: Any, *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Hot-plug loop until SIGTERM/SIGINT; then a graceful stop."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        discovery = SerialDiscovery(self.config.serial_ports)
        watchdog = systemd.watchdog_interval_s()
        last_notify = 0.0
        # Pet the watchdog at half its interval from this loop only: if hot-plug handling ever
        # hangs, systemd restarts us. STATUS= rides along (a no-op without NOTIFY_SOCKET).
        notify_every = min(watchdog / 2, 5.0) if watchdog else 5.0
        while not self.stopping.is_set():
            # Slot identity is the physical place: the serial device path, or the USB bus-port
            # chain (``usb:1-1.3``). A device's identity tells a replug into the same place.
            present: dict[str, Device] = {
                path: Device(functools.partial(SerialTransport, path), identity)
                for path, identity in discovery.scan().items()}
            usb = self._usb_discovery()
            if usb is not None:
                present.update({slot: Device(functools.partial(UsbTransport, device),
                                             (device.bus, device.address))
                                for slot, device in usb.scan().items()})
            self.slots.update(present)
            now = time.monotonic()
            if now - last_notify >= notify_every:
                if watchdog:
                    systemd.watchdog()
                systemd.status(self.summary_line())
                last_notify = now
            self.stopping.wait(_SCAN_INTERVAL_S)
        self.shutdown()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        self.stopping.set()

    def shutdown(self, grace_s: float = 6.0) -> None:
        """Stop within systemd's 10 s: sessions finish the chunk in hand, then lines close."""
        systemd.stopping()
        self.stopping.set()
        self.slots.wake_all()  # idle and parked sessions end now, publishing their undock
        if not self.slots.join(grace_s):
            self.slots.close_all()  # a chunk cut here is simply fetched again next time
            self.slots.join(2.0)
        for thread in self._threads:
            thread.join(1.0)
        # The sessions wrote records after the compliance loop's last tick (their last stores,
        # their undocks): queue them now, so a stopped dock's outbox is its whole backlog and a
        # restart starts draining instead of growing first.
        if any(t.name == "compliance" and t.is_alive() for t in self._threads):
            log.warning("compliance loop still busy at stop: its records are queued next start")
        else:
            try:
                self.compliance_loop.pump_ledger()
            except Exception:  # durable in the journal: the next start queues them
                log.exception("queueing the last compliance records failed")
        try:  # `dock-agent status` on a stopped dock shows the backlog it stopped with
            atomic_write_json(self.paths.status, self._status_snapshot(self._health()))
        except Exception:  # status.json is a view; the outbox itself is durable
            log.exception("writing the final status failed")
        if self.link is not None:
            self.publisher.flush_retained(1.0)
            self.link.publish(self.topics.state, encode(self._state_payload("offline")),
                              qos=1, retain=True).wait(1.0)
            self.link.stop(timeout=1.0)
        self.outbox.close()
        self.sessions_journal.close()
        self.compliance.close()
        self.registry.close()
        log.info("stopped")

    def summary_line(self) -> str:
        with self._cameras_lock:
            docked = sum(1 for c in self._cameras.values() if c.get("docked"))
        return (f"{docked} docked, {self.slots.active} sessions, "
                f"outbox {self.outbox.depth}, mqtt "
                f"{'up' if self.link and self.link.connected else 'down'}")

    def _health_loop(self) -> None:
        """Health on MQTT every ``health_interval_s``; status.json (for ``dock-agent status``)
        within a second of a change, so the local view is never a minute stale."""
        next_health = 0.0
        last_written: dict[str, Any] | None = None
        health: dict[str, Any] = {}
        while True:
            try:
                now = time.monotonic()
                if now >= next_health:
                    health = self._health()
                    self.publisher.set_retained(self.topics.health, health)
                    next_health = now + self.config.health_interval_s
                snapshot = self._status_snapshot(health)
                if snapshot != last_written:
                    atomic_write_json(self.paths.status, snapshot)
                    last_written = snapshot
            except Exception:  # e.g. an I/O error writing status.json: retried next second
                log.exception("health loop: status update failed")
            if self.stopping.wait(1.0):
                return

    def _status_snapshot(self, health: dict[str, Any]) -> dict[str, Any]:
        with self._cameras_lock:
            cameras = {k: dict(v) for k, v in self._cameras.items()}
        return {"health": health, "cameras": cameras, "summary": self.summary_line()}

    def _health(self) -> dict[str, Any]:
        with self._cameras_lock:
            docked = sum(1 for c in self._cameras.values() if c.get("docked"))
        return health_payload(
            dock_id=self.config.dock_id, store_dir=self.paths.footage,
            outbox_depth=self.outbox.depth,
            oldest_unacked=self.outbox.oldest_pending_created_at, docked=docked,
            offloading=self.offload_slots.in_use, started=self._started,
            publishes_refused=self.publisher.refused)

    # -- sessions ----------------------------------------------------------------------------

    def _usb_discovery(self) -> UsbDiscovery | None:
        """USB hot-plug, when ``usb_ids`` names any camera. A backend that cannot be loaded
        (no libusb on this system) is reported loudly and retried each minute; serial cameras
        are served meanwhile."""
        if self._usb is not None or not self.config.usb_ids:
            return self._usb
        now = time.monotonic()
        if now < self._usb_retry_at:
            return None
        try:
            backend = load_backend(self.config.usb_backend)
        except TransportError as exc:
            first = self._usb_retry_at == 0.0
            self._usb_retry_at = now + 60.0
            self.usb_problem = str(exc)
            if first:
                log.error("usb unavailable: %s", exc)
                self.event("usb_unavailable", None, {"backend": self.config.usb_backend,
                                                     "error": str(exc)})
            return None
        self.usb_problem = None
        self._usb = UsbDiscovery(backend, [(i.vendor, i.product) for i in self.config.usb_ids])
        log.info("usb discovery on %s for %s", self.config.usb_backend,
                 ", ".join(str(i) for i in self.config.usb_ids))
        return self._usb

    def _serve(self, transport: Transport, watch: SlotWatch) -> SessionOutcome:
        return run_session(self, transport, watch)

    # -- SessionHost -------------------------------------------------------------------------

    def session_crashed(self, slot: str, exc: BaseException) -> None:
        self.event("session_crashed", None, {"slot": slot, "error": type(exc).__name__,
                                             "detail": str(exc)[:200]})

    def event(self, name: str, camera_uid: bytes | None, details: dict[str, Any]) -> None:
        payload = event_payload(name, camera_uid, details, dock_id=self.config.dock_id)
        try:
            self.outbox.put("event", self.topics.events, payload, payload["id"])
        except (OSError, StoreError) as exc:
            # The state directory cannot take it (read-only, failing disk), yet the console
            # must hear of it (it is often the alert about that very failure): publish it
            # once, directly. Best effort: not kept, not re-sent (docs/mqtt.md, Delivery).
            link = self.link
            sent = link is not None and link.connected
            if sent and link is not None:
                link.publish(self.topics.events, encode(payload), qos=1)
            log.error("event %s not queued (%s); %s", name, exc,
                      "published once without the outbox" if sent else "lost: mqtt down")
            return
        log.info("event %s camera=%s %s", name, camera_uid.hex() if camera_uid else "-",
                 {k: v for k, v in details.items() if k in ("reason", "reasons", "slot")})
        self.publisher.poke()

    def camera_status(self, camera_uid: bytes, status: dict[str, Any]) -> None:
        key = camera_uid.hex()
        with self._cameras_lock:
            merged = {**self._cameras.get(key, {}), **status}
            self._cameras[key] = merged
        payload = {"type": "camera_status", "schema": SCHEMA, "dock_id": self.config.dock_id,
                   "camera_uid": key, "updated_at": iso_now(), **merged}
        self.publisher.set_retained(self.topics.camera(camera_uid), payload)

    def queue_manifest(self, manifest: dict[str, Any], recording_id: bytes) -> None:
        self.outbox.put("manifest", self.topics.manifests, manifest, manifest["manifest_id"])
        self.registry.mark_published(manifest["manifest_id"])
        self.publisher.poke()

    def manifest_acknowledged(self, manifest_id: str) -> bool:
        if self.outbox.is_pending(manifest_id):
            return False
        return all(mid != manifest_id for mid, _ in self.registry.unpublished())

    def wait_for_space(self, size: int, while_waiting: Callable[[], None] = lambda: None
                       ) -> None:
        """Back-pressure: block this offload until ``size`` more bytes fit above the reserve,
        calling ``while_waiting`` every poll meanwhile (the session keeps the camera's status
        fresh there: a pause can last hours).

        All sessions share one "store low" state, so the console sees one ``storage_low`` and
        one ``storage_ok`` per episode, not one per camera. Raises ``OffloadStopped`` when the
        agent stops meanwhile (the offload resumes from the last durable chunk next time).
        """
        reserve = self.config.storage_reserve_bytes
        while True:
            free = self.store.free_bytes()
            if free - size >= reserve:
                with self._space_lock:
                    was_low, self._store_low = self._store_low, False
                if was_low:
                    self.event("storage_ok", None, {"free_bytes": free,
                                                    "reserve_bytes": reserve})
                return
            with self._space_lock:
                was_low, self._store_low = self._store_low, True
            if not was_low:
                log.warning("store low: %d bytes free, reserve %d: offloads paused", free,
                            reserve)
                self.event("storage_low", None, {"free_bytes": free, "reserve_bytes": reserve,
                                                 "needed_bytes": size})
            if self.stopping.wait(_SPACE_POLL_S):
                raise OffloadStopped("stopping while waiting for storage space")
            while_waiting()

    def record_step(self, session_id: str, step: str, details: dict[str, Any]) -> None:
        with self._journal_lock:
            self.sessions_journal.append({"session": session_id, "step": step,
                                          "at": iso_now(), **details})
        log.info("session=%s %s %s", session_id, step,
                 {k: v for k, v in details.items() if k not in ("entries",)})
