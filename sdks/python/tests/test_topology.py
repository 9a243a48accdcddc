"""The RabbitMQ transports (pika and aio-pika) declare the auditor's queue and
binding as the Rust publisher does: events published before any auditor ever ran
wait in the queue (a quorum queue by default, with the Rust publisher's
arguments) and reach the auditor once it starts; an existing queue (the
prototype's non-durable classic one) is adopted as it was declared."""

from __future__ import annotations

import asyncio
import shutil
import tempfile

import pytest

from auditlog import DELIVERY_LIMIT, AsyncEmitter, Emitter
from conftest import AMQP_URL, Auditor, drop_amqp, free_port, summary, unique

EVENTS = 2_000


def on_channel(fn):
    """Runs ``fn(channel)`` on a channel of its own: its result, or ``refused: …`` when the broker closes the channel."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        try:
            result = fn(channel)
        except pika.exceptions.ChannelClosedByBroker as err:
            return f"refused: {err.reply_code} {err.reply_text}"
        channel.close()
        return result
    finally:
        connection.close()


def emit_without_auditor(flavour, names, actor_id, **extra):
    """Emits EVENTS events with no auditor running (``queue_type`` left to its default unless given)."""
    spill = tempfile.mkdtemp(prefix="auditlog-py-topology-")
    options = {"amqp_url": AMQP_URL, "exchange": names["exchange"], "queue": names["queue"],
               "dead_letter_queue": names["queue"] + ".dead-letter", "source": "sdkpy", "spill_dir": spill, **extra}
    events = [{"action": "created", "actorType": "sdk-tests", "actorId": actor_id, "targetType": "items", "targetId": i}
              for i in range(EVENTS)]
    try:
        if flavour == "sync":
            audit = Emitter(handle_signals=False, **options)
            for e in events:
                audit.emit(e)
            audit.close()
            return audit

        async def run():
            audit = AsyncEmitter(**options)
            for e in events:
                audit.emit(e)
            await audit.close()
            return audit

        return asyncio.run(run())
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def auditor_receives_all(names, audit, actor_id):
    """Starts the auditor on ``names`` for the first time: every event arrives once, without a gap."""
    data_dir = tempfile.mkdtemp(prefix="auditlog-py-topology-")
    auditor = Auditor(data_dir, free_port(), amqp=names).start()
    try:
        assert summary(auditor.wait_for_producer(audit.producer_id, EVENTS)) == (EVENTS, EVENTS, 0)
        assert auditor.count_by_actor("sdk-tests", actor_id) == EVENTS
    finally:
        auditor.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_events_published_before_any_auditor_ran_wait_in_a_quorum_queue_declared_as_the_rust_publisher_does(flavour):
    names = {"exchange": unique(f"sdk-py-fresh-{flavour}-ex"), "queue": unique(f"sdk-py-fresh-{flavour}-q"), "queue_type": "quorum"}
    actor_id = unique(f"fresh-{flavour}")
    try:
        audit = emit_without_auditor(flavour, names, actor_id)  # the default queue type: quorum
        s = audit.stats
        assert (s.delivered, s.failed_attempts, s.spilled) == (EVENTS, 0, 0), "every batch routed and confirmed at once"

        waiting = on_channel(lambda c: c.queue_declare(names["queue"], passive=True).method.message_count)
        assert isinstance(waiting, int) and waiting > 0, f"the queue holds the batches ({waiting})"
        # RabbitMQ accepts a re-declaration only with equivalent arguments: durable, quorum, the Rust
        # publisher's delivery limit and dead-letter routing...
        rust = {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT, "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": names["queue"] + ".dead-letter"}
        assert on_channel(lambda c: c.queue_declare(names["queue"], durable=True, arguments=rust) and "ok") == "ok"
        # ...and not classic; the dead-letter queue is a quorum queue too.
        assert on_channel(lambda c: c.queue_declare(names["queue"], durable=True, arguments={"x-queue-type": "classic"})).startswith("refused: 406")
        dlq = names["queue"] + ".dead-letter"
        assert on_channel(lambda c: c.queue_declare(dlq, durable=True, arguments={"x-queue-type": "quorum"}) and "ok") == "ok"

        auditor_receives_all(names, audit, actor_id)
    finally:
        drop_amqp(names)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_an_existing_non_durable_classic_queue_and_exchange_are_adopted_as_they_were_declared(flavour):
    names = {"exchange": unique(f"sdk-py-proto-{flavour}-ex"), "queue": unique(f"sdk-py-proto-{flavour}-q"), "queue_type": "quorum"}
    actor_id = unique(f"adopt-{flavour}")
    try:
        # The prototype's declarations.
        on_channel(lambda c: (c.exchange_declare(names["exchange"], exchange_type="topic", durable=False),
                              c.queue_declare(names["queue"], durable=False)))
        audit = emit_without_auditor(flavour, names, actor_id, queue_type="quorum")
        assert (audit.stats.delivered, audit.stats.failed_attempts) == (EVENTS, 0)
        # Still non-durable and classic: a declaration as the prototype made it is equivalent.
        assert on_channel(lambda c: c.queue_declare(names["queue"], durable=False) and "ok") == "ok"
        assert on_channel(lambda c: c.exchange_declare(names["exchange"], exchange_type="topic", durable=False) and "ok") == "ok"

        auditor_receives_all(names, audit, actor_id)
    finally:
        drop_amqp(names)
