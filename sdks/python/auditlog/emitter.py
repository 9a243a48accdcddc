"""The emitters. ``emit(event)`` checks and enqueues the event and returns at once;
a background thread (:class:`Emitter`) or asyncio task (:class:`AsyncEmitter`)
batches (size and linger), numbers each event with the producer id and the next
sequence number as it leaves the queue, publishes, retries with backoff, and while
the transport is away writes what arrives to the spill file, replaying it in
order once the transport is back."""

from __future__ import annotations

import asyncio
import atexit
import collections
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .context import current_request_id
from .event import AuditValidationError, DataEvent, dumps, validate
from .ids import uuid7
from .spill import Spill
from .topology import AmqpTopology, QueueType
from .transport import (
    AmqpTransport,
    AsyncAmqpTransport,
    AsyncHttpTransport,
    AsyncTransport,
    Backoff,
    HttpTransport,
    TokenSource,
    Transport,
)

log = logging.getLogger("auditlog")


@dataclass
class EmitterStats:
    """What happened to the emitted events so far."""

    emitted: int = 0
    """Accepted by emit()."""
    delivered: int = 0
    """Confirmed by the transport (including events replayed from an earlier run's spill)."""
    spilled: int = 0
    """Written to the spill file."""
    dropped: int = 0
    """Lost: a full queue or close() out of time, without a spill file. Stays 0 with one."""
    failed_attempts: int = 0
    """Publish attempts that failed and were retried."""


class _Core:
    """What both emitters share: the queue, numbering, spill and counters."""

    def __init__(
        self,
        source: str,
        producer_id: str | None,
        max_batch: int,
        linger: float,
        queue_capacity: int,
        spill_dir: str | os.PathLike[str] | None | bool,
        shutdown_grace: float,
        publish_timeout: float,
    ) -> None:
        if not isinstance(source, str) or not source:
            raise TypeError("auditlog: `source` (the emitting service's name) is required")
        self.source = source
        self.producer_id = producer_id or f"{source}/{uuid7()}"
        self._producer_json = dumps(self.producer_id)
        self.max_batch = max(1, max_batch)
        self.linger = max(0.0, linger)
        self.capacity = max(2, queue_capacity)
        self.doorbell_at = max(1, min(self.max_batch, self.capacity // 4))
        self.shutdown_grace = shutdown_grace
        self.publish_timeout = publish_timeout
        if spill_dir is None or spill_dir is True:
            spill_dir = Path.cwd() / ".auditlog-spill" / re.sub(r"[^A-Za-z0-9._-]", "_", source)
        self.spill = Spill(spill_dir) if spill_dir is not False else None
        self.queue: collections.deque[str] = collections.deque()
        self.seq = 0
        self.stats = EmitterStats()
        self.backoff = Backoff()
        self.head: list[str] | None = None
        self.head_spill_end: int | None = None
        self.stopping = False
        self.closed = False
        self.lock = threading.Lock()  # numbering and spill writes

    def prepare(self, event: Mapping[str, Any]) -> tuple[str, str]:
        e = dict(event)
        for field in ("producerId", "producerSeq"):
            if field in e:
                raise AuditValidationError(field, "is set by the emitter; leave it out")
        if e.get("timestamp") is None:
            e["timestamp"] = int(time.time() * 1000)
        if e.get("id") is None:
            e["id"] = uuid7(e["timestamp"] if isinstance(e["timestamp"], int) else None)
        if e.get("source") is None:
            e["source"] = self.source
        if e.get("requestId") is None:
            rid = current_request_id()
            if rid is not None:
                e["requestId"] = rid
        return validate(e), e["id"]

    def take(self, limit: int | None) -> list[str]:
        """Takes up to ``limit`` queued events and numbers them (caller holds ``lock``)."""
        out: list[str] = []
        q = self.queue
        n = len(q) if limit is None else min(limit, len(q))
        for _ in range(n):
            self.seq += 1
            out.append(f'{q.popleft()[:-1]},"producerId":{self._producer_json},"producerSeq":{self.seq}}}')
        return out

    def spill_queued(self) -> None:
        if self.spill is None or not self.queue:
            return
        with self.lock:
            lines = self.take(None)
            try:
                self.spill.append(lines)
                self.stats.spilled += len(lines)
            except OSError as err:
                self.stats.dropped += len(lines)
                log.error("auditlog: %d event(s) lost: the spill file cannot be written: %s", len(lines), err)

    def next_from_spill(self) -> bool:
        """Loads the spill's next chunk as the head; False when there is no backlog."""
        if self.spill is None or not self.spill.has_backlog():
            return False
        self.spill_queued()  # newer than the backlog: behind it
        lines, end, unreadable = self.spill.read_chunk(self.max_batch)
        if unreadable:
            self.stats.dropped += unreadable
            log.error("auditlog: %d line(s) of the spill file could not be read back", unreadable)
        if not lines:
            self.spill.confirm(end)
            return True
        self.head, self.head_spill_end = lines, end
        return True

    def delivered(self) -> None:
        assert self.head is not None
        self.stats.delivered += len(self.head)
        if self.head_spill_end is not None and self.spill is not None:
            self.spill.confirm(self.head_spill_end)
        self.head, self.head_spill_end = None, None
        self.backoff.reset()

    def give_up(self) -> None:
        """close() ran out of time: keep the rest on disk for the next start, or count it lost."""
        head, from_spill = self.head or [], self.head_spill_end is not None
        self.head, self.head_spill_end = None, None
        if self.spill is not None:
            if not from_spill:
                with self.lock:
                    self.spill.append(head)
                    self.stats.spilled += len(head)
            self.spill_queued()
            log.warning(
                "auditlog: the transport is still away at close(); %d bytes of events left in %s for the next start",
                self.spill.backlog_bytes(),
                self.spill.dir,
            )
        else:
            lost = (0 if from_spill else len(head)) + len(self.queue)
            self.queue.clear()
            self.stats.dropped += lost
            log.error("auditlog: %d event(s) lost: the transport is still away at close() and there is no spill file", lost)

    def after_close(self, text: str) -> None:
        """An event emitted after close(): to the spill file at once, or lost (and counted)."""
        if self.spill is not None:
            with self.lock:
                self.queue.append(text)
                lines = self.take(None)
                spill = Spill(self.spill.dir)
                try:
                    spill.append(lines)
                    self.stats.spilled += len(lines)
                finally:
                    spill.close()
            return
        self.stats.dropped += 1
        log.error("auditlog: an audit event emitted after close() was dropped (no spill file)")

    def pending(self) -> bool:
        return bool(self.queue) or self.head is not None or (self.spill is not None and self.spill.has_backlog())


def _defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "producer_id": kwargs.get("producer_id"),
        "max_batch": kwargs.get("max_batch", 5000),
        "linger": kwargs.get("linger", 0.02),
        "queue_capacity": kwargs.get("queue_capacity", 65_536),
        "spill_dir": kwargs.get("spill_dir"),
        "shutdown_grace": kwargs.get("shutdown_grace", 10.0),
        "publish_timeout": kwargs.get("publish_timeout", 30.0),
    }


class Emitter:
    """Delivers events from a background thread.

    ``Emitter(url=…, token=…, source=…)`` for HTTP ingest, or
    ``Emitter(amqp_url=…, source=…)`` for RabbitMQ. Tuning (keyword arguments):
    ``max_batch`` (5 000), ``linger`` (0.02 s), ``queue_capacity`` (65 536),
    ``spill_dir`` (``.auditlog-spill/<source>`` in the working directory; ``False``
    for none; one process per directory), ``shutdown_grace`` (10 s),
    ``publish_timeout`` (30 s), ``producer_id`` (``<source>/<UUIDv7>``),
    ``handle_signals`` (True: close on SIGTERM and at interpreter exit),
    ``transport`` (one of your own). RabbitMQ names, as the Rust publisher's:
    ``exchange`` (``api-stream``), and the auditor's ``queue``
    (``data-mutation-audits``), ``binding_key`` (``*.data.mutated``),
    ``dead_letter_queue`` (``data-mutation-audits.dead-letter``) and
    ``queue_type`` of queues declared when missing (``quorum`` or ``classic``):
    the emitter declares the queue and binding, so that events emitted before
    any auditor ever ran wait in the queue; what exists is used as declared.
    """

    def __init__(
        self,
        *,
        source: str,
        url: str | None = None,
        token: TokenSource = None,
        amqp_url: str | None = None,
        exchange: str = "api-stream",
        queue: str = "data-mutation-audits",
        binding_key: str = "*.data.mutated",
        dead_letter_queue: str = "data-mutation-audits.dead-letter",
        queue_type: QueueType = "quorum",
        transport: Transport | None = None,
        handle_signals: bool = True,
        **tuning: Any,
    ) -> None:
        if transport is None:
            if bool(url) == bool(amqp_url):
                raise TypeError("auditlog: give `url` (and `token`) for HTTP ingest or `amqp_url` for RabbitMQ")
            transport = HttpTransport(url, token) if url else AmqpTransport(
                amqp_url or "", source, topology=AmqpTopology(exchange, queue, binding_key, dead_letter_queue, queue_type)
            )
        self._transport = transport
        self._core = _Core(source, **_defaults(tuning))
        self._bell = threading.Event()
        self._idle = threading.Condition()
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="auditlog-emitter", daemon=True)
        self._thread.start()
        self._previous_sigterm: Any = None
        if handle_signals:
            atexit.register(self.close)
            if threading.current_thread() is threading.main_thread():
                self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    @property
    def producer_id(self) -> str:
        """The producer id this emitter numbers its events under."""
        return self._core.producer_id

    @property
    def stats(self) -> EmitterStats:
        return self._core.stats

    def emit(self, event: DataEvent | Mapping[str, Any]) -> str:
        """Records an event and returns its id: fills ``id`` (UUIDv7), ``timestamp``,
        ``source`` and ``requestId`` when absent, checks it and enqueues it. Never
        waits and never raises for transport trouble; raises
        :class:`AuditValidationError` (naming the field) for an event that breaks
        the contract, which no retry could deliver."""
        core = self._core
        text, event_id = core.prepare(event)
        core.stats.emitted += 1
        if core.closed:
            core.after_close(text)
            return event_id
        q = core.queue
        if len(q) >= core.capacity:
            core.stats.dropped += 1
            log.error("auditlog: audit event %s dropped: the emitter's queue is full", event_id)
            return event_id
        q.append(text)
        n = len(q)
        if n == 1 or n >= core.doorbell_at:
            self._bell.set()
        return event_id

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything emitted so far is delivered; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._core.pending() and not self._core.closed:
                self._bell.set()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(0.05 if left is None else min(left, 0.05))
        return True

    def close(self) -> None:
        """Delivers everything emitted, retrying for up to ``shutdown_grace``; what is
        still undelivered then stays in the spill file for the next start. Idempotent."""
        with self._close_lock:
            if self._core.closed:
                return
            self._core.stopping = True
            self._bell.set()
            self._thread.join()
            self._core.closed = True
            try:
                self._transport.close()
            finally:
                if self._core.spill is not None:
                    self._core.spill.close()
            try:
                atexit.unregister(self.close)
            except Exception:
                pass

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.close()
        previous = self._previous_sigterm
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            os.kill(os.getpid(), signal.SIGTERM)

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the background thread -------------------------------------------

    def _wait(self, seconds: float | None) -> None:
        self._bell.wait(seconds)
        self._bell.clear()

    def _notify_idle(self) -> None:
        with self._idle:
            self._idle.notify_all()

    def _run(self) -> None:
        core = self._core
        deadline = float("inf")
        while True:
            if core.stopping and deadline == float("inf"):
                deadline = time.monotonic() + core.shutdown_grace
            if core.head is None:
                if core.next_from_spill():
                    if core.head is None:
                        continue
                else:
                    if not core.queue:
                        if core.stopping:
                            break
                        self._notify_idle()
                        self._wait(None)
                        continue
                    until = time.monotonic() + core.linger
                    while not core.stopping and len(core.queue) < core.max_batch:
                        left = until - time.monotonic()
                        if left <= 0:
                            break
                        self._wait(left)
                    with core.lock:
                        core.head, core.head_spill_end = core.take(core.max_batch), None
            try:
                self._transport.publish(core.head, core.publish_timeout)
                core.delivered()
                continue
            except Exception as err:
                core.stats.failed_attempts += 1
                log.warning("auditlog: batch of %d not delivered; retrying in %.2f s: %s", len(core.head), core.backoff.pause, err)
            if core.stopping and time.monotonic() + core.backoff.pause > deadline:
                core.give_up()
                break
            core.spill_queued()  # the transport is away: what arrives goes to disk
            until = time.monotonic() + core.backoff.next()
            while (left := until - time.monotonic()) > 0:
                self._wait(left)
                core.spill_queued()
                if core.stopping and deadline == float("inf"):
                    deadline = time.monotonic() + core.shutdown_grace
        self._notify_idle()


class AsyncEmitter:
    """The asyncio emitter: the same as :class:`Emitter`, its delivery an asyncio task
    on the running loop (aio-pika for RabbitMQ). Create it inside a running loop;
    ``emit`` is synchronous, ``await flush()`` and ``await close()``."""

    def __init__(
        self,
        *,
        source: str,
        url: str | None = None,
        token: TokenSource = None,
        amqp_url: str | None = None,
        exchange: str = "api-stream",
        queue: str = "data-mutation-audits",
        binding_key: str = "*.data.mutated",
        dead_letter_queue: str = "data-mutation-audits.dead-letter",
        queue_type: QueueType = "quorum",
        transport: AsyncTransport | None = None,
        **tuning: Any,
    ) -> None:
        if transport is None:
            if bool(url) == bool(amqp_url):
                raise TypeError("auditlog: give `url` (and `token`) for HTTP ingest or `amqp_url` for RabbitMQ")
            transport = AsyncHttpTransport(url, token) if url else AsyncAmqpTransport(
                amqp_url or "", source, topology=AmqpTopology(exchange, queue, binding_key, dead_letter_queue, queue_type)
            )
        self._transport = transport
        self._core = _Core(source, **_defaults(tuning))
        self._bell = asyncio.Event()
        self._idle = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._closing: asyncio.Task[None] | None = None

    @property
    def producer_id(self) -> str:
        return self._core.producer_id

    @property
    def stats(self) -> EmitterStats:
        return self._core.stats

    def emit(self, event: DataEvent | Mapping[str, Any]) -> str:
        """As :meth:`Emitter.emit`; call it from the loop's thread."""
        core = self._core
        text, event_id = core.prepare(event)
        core.stats.emitted += 1
        if core.closed:
            core.after_close(text)
            return event_id
        if len(core.queue) >= core.capacity:
            core.stats.dropped += 1
            log.error("auditlog: audit event %s dropped: the emitter's queue is full", event_id)
            return event_id
        core.queue.append(text)
        n = len(core.queue)
        if n == 1 or n >= core.doorbell_at:
            self._bell.set()
        return event_id

    async def flush(self) -> None:
        """Waits until everything emitted so far is delivered."""
        while self._core.pending() and not self._task.done():
            self._idle.clear()
            self._bell.set()
            await self._idle.wait()

    async def close(self) -> None:
        """As :meth:`Emitter.close`."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._core.stopping = True
        self._bell.set()
        await self._task
        self._core.closed = True
        await self._transport.close()
        if self._core.spill is not None:
            self._core.spill.close()

    async def __aenter__(self) -> AsyncEmitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _wait(self, seconds: float | None) -> None:
        try:
            await asyncio.wait_for(self._bell.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self._bell.clear()

    async def _run(self) -> None:
        core = self._core
        deadline = float("inf")
        while True:
            if core.stopping and deadline == float("inf"):
                deadline = time.monotonic() + core.shutdown_grace
            if core.head is None:
                if core.next_from_spill():
                    if core.head is None:
                        continue
                else:
                    if not core.queue:
                        if core.stopping:
                            break
                        self._idle.set()
                        await self._wait(None)
                        continue
                    until = time.monotonic() + core.linger
                    while not core.stopping and len(core.queue) < core.max_batch:
                        left = until - time.monotonic()
                        if left <= 0:
                            break
                        await self._wait(left)
                    core.head, core.head_spill_end = core.take(core.max_batch), None
            try:
                await asyncio.wait_for(self._transport.publish(core.head, core.publish_timeout), core.publish_timeout)
                core.delivered()
                continue
            except Exception as err:
                core.stats.failed_attempts += 1
                log.warning("auditlog: batch of %d not delivered; retrying in %.2f s: %s", len(core.head), core.backoff.pause, err)
            if core.stopping and time.monotonic() + core.backoff.pause > deadline:
                core.give_up()
                break
            core.spill_queued()
            until = time.monotonic() + core.backoff.next()
            while (left := until - time.monotonic()) > 0:
                await self._wait(left)
                core.spill_queued()
                if core.stopping and deadline == float("inf"):
                    deadline = time.monotonic() + core.shutdown_grace
        self._idle.set()
