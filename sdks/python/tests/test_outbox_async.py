"""The asyncio outbox (psycopg's AsyncConnection, AsyncOutboxRelay) against the real
PostgreSQL: events staged in committed transactions are each stored once, a
rolled-back transaction leaves no event, and a relay killed between publishing and
deleting duplicates nothing (the auditor stores each id once)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from auditlog import Outbox, diff
from conftest import PG_DSN, summary, unique

COMMITTED = 120


@pytest.fixture
def pg_database():
    name = unique("sdk_py_async").lower()
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield PG_DSN.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def stage_users(outbox: Outbox, dsn: str, actor_id: str) -> None:
    """COMMITTED users created in transactions of their own, each with its event
    staged inside; then one more whose transaction is rolled back."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await outbox.migrate_async(conn)
        await conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        await conn.commit()
        for user in range(1, COMMITTED + 1):
            async with conn.cursor() as cur:
                await cur.execute("INSERT INTO users (id, name) VALUES (%s, %s)", (user, f"user {user}"))
                await outbox.stage_async(cur, {"action": "created", "actorType": "sdk-tests", "actorId": actor_id,
                                               "targetType": "users", "targetId": user,
                                               "changes": diff(None, {"name": f"user {user}"})})
            await conn.commit()
        await conn.execute("INSERT INTO users (id, name) VALUES (%s, %s)", (999, "ghost"))
        await outbox.stage_async(conn, {"action": "created", "actorType": "sdk-tests", "actorId": actor_id,
                                        "targetType": "users", "targetId": 999})
        await conn.rollback()
        assert await outbox.staged_async(conn) == COMMITTED


def staged(outbox: Outbox, dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return outbox.staged(conn)


async def relay_until_empty(outbox: Outbox, dsn: str, url: str, token: str) -> int:
    """The relay task started, woken, and stopped once the outbox is empty; returns what it published."""
    relay = outbox.async_relay(lambda: psycopg.AsyncConnection.connect(dsn), url=url, token=token, batch=50).start()
    relay.wake()
    deadline = time.monotonic() + 60
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while await outbox.staged_async(conn) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    await relay.stop(grace=0)
    return relay.published


def test_async_outbox_commit_rollback_and_a_relay_killed_mid_publish(pg_database, auditor):
    dsn, outbox, actor_id = pg_database, Outbox("postgres", source="sdkpy"), unique("async-outbox")
    asyncio.run(stage_users(outbox, dsn, actor_id))
    assert staged(outbox, dsn) == COMMITTED, "the rolled-back transaction staged nothing"

    service = auditor.token("sdk-py", "service")
    child = subprocess.run([sys.executable, str(Path(__file__).with_name("child_relay_async.py")), dsn, auditor.url, service])
    assert child.returncode == -signal.SIGKILL
    assert staged(outbox, dsn) == COMMITTED, "the killed relay deleted nothing"
    assert auditor.count_by_actor("sdk-tests", actor_id) == 50, "its batch was delivered"

    published = asyncio.run(relay_until_empty(outbox, dsn, auditor.url, service))
    assert published == COMMITTED, "the relay published the killed relay's batch again, and the rest"
    assert staged(outbox, dsn) == 0
    assert auditor.count_by_actor("sdk-tests", actor_id) == COMMITTED, "each id stored once; the rolled-back one never"
    with psycopg.connect(dsn) as conn:
        producer_id = conn.execute("SELECT producer_id FROM auditlog_outbox_state").fetchone()[0]
    assert summary(auditor.producer(producer_id)) == (COMMITTED, COMMITTED, 0)


def test_the_async_outbox_api_refuses_mysql_with_a_clear_error():
    outbox = Outbox("mysql", source="sdkpy")
    with pytest.raises(TypeError, match="PostgreSQL"):
        outbox.async_relay(lambda: None, url="http://127.0.0.1:1", token="t")
