"""20 000 events over HTTP ingest and over RabbitMQ, with the thread emitter and the
asyncio one: each stored exactly once, with no gap in the producer's numbers."""

from __future__ import annotations

import asyncio

import pytest

from auditlog import AsyncEmitter, Emitter
from conftest import amqp_options, summary, unique

EVENTS = 20_000


def options(kind, auditor, data_dir):
    if kind == "http":
        return {"url": auditor.url, "token": auditor.token("sdk-py", "service")}
    return amqp_options(auditor.amqp)


def check_stored(auditor, producer_id, actor_id):
    assert summary(auditor.wait_for_producer(producer_id, EVENTS)) == (EVENTS, EVENTS, 0)
    assert auditor.count_by_actor("sdk-tests", actor_id) == EVENTS


def event(actor_id, i):
    return {"action": "viewed", "actorType": "sdk-tests", "actorId": actor_id, "targetType": "items", "targetId": i}


@pytest.mark.parametrize("kind", ["http", "amqp"])
def test_20000_events_with_the_thread_emitter_are_each_stored_once(kind, request, data_dir):
    auditor = request.getfixturevalue("auditor" if kind == "http" else "amqp_auditor")
    actor_id = unique(kind)
    audit = Emitter(source="sdkpy", spill_dir=f"{data_dir}/spill", handle_signals=False, **options(kind, auditor, data_dir))
    for i in range(EVENTS):
        audit.emit(event(actor_id, i))
    audit.close()
    assert (audit.stats.emitted, audit.stats.delivered, audit.stats.dropped) == (EVENTS, EVENTS, 0)
    check_stored(auditor, audit.producer_id, actor_id)


@pytest.mark.parametrize("kind", ["http", "amqp"])
def test_20000_events_with_the_asyncio_emitter_are_each_stored_once(kind, request, data_dir):
    auditor = request.getfixturevalue("auditor" if kind == "http" else "amqp_auditor")
    actor_id = unique(f"async-{kind}")

    async def run():
        audit = AsyncEmitter(source="sdkpy", spill_dir=f"{data_dir}/spill", **options(kind, auditor, data_dir))
        for i in range(EVENTS):
            audit.emit(event(actor_id, i))
            if i % 1000 == 999:
                await asyncio.sleep(0)
        await audit.flush()
        await audit.close()
        return audit

    audit = asyncio.run(run())
    assert (audit.stats.emitted, audit.stats.delivered, audit.stats.dropped) == (EVENTS, EVENTS, 0)
    check_stored(auditor, audit.producer_id, actor_id)
