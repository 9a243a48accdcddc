"""The outbox helpers against the real PostgreSQL and MariaDB: a committed change has
one event, a rolled-back one none, and a relay killed between publishing and
deleting duplicates nothing (the auditor stores each id once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from auditlog import Outbox, diff
from conftest import MYSQL, PG_DSN, summary, unique


def connector(dialect, name):
    if dialect == "postgres":
        import psycopg

        dsn = PG_DSN.rsplit("/", 1)[0] + "/" + name
        return lambda: psycopg.connect(dsn)
    import pymysql

    return lambda: pymysql.connect(**MYSQL, database=name)


@pytest.fixture(params=["postgres", "mysql"])
def database(request):
    dialect, name = request.param, unique(f"sdk_py_{request.param}").lower()
    if dialect == "postgres":
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        yield dialect, name
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        import pymysql

        admin = pymysql.connect(**MYSQL, autocommit=True)
        admin.cursor().execute(f"CREATE DATABASE {name}")
        yield dialect, name
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def test_outbox_commit_rollback_and_a_relay_killed_mid_publish(database, auditor):
    dialect, name = database
    connect = connector(dialect, name)
    outbox = Outbox(dialect, source="sdkpy")
    conn = connect()
    outbox.migrate(conn)
    conn.cursor().execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.commit()
    actor_id, committed = unique("outbox"), 120
    for user in range(1, committed + 1):
        cur = conn.cursor()
        cur.execute("INSERT INTO users (id, name) VALUES (%s, %s)", (user, f"user {user}"))
        outbox.stage(cur, {"action": "created", "actorType": "sdk-tests", "actorId": actor_id,
                           "targetType": "users", "targetId": user, "changes": diff(None, {"name": f"user {user}"})})
        conn.commit()
    cur = conn.cursor()
    cur.execute("INSERT INTO users (id, name) VALUES (%s, %s)", (999, "ghost"))
    outbox.stage(cur, {"action": "created", "actorType": "sdk-tests", "actorId": actor_id, "targetType": "users", "targetId": 999})
    conn.rollback()
    assert outbox.staged(conn) == committed
    conn.commit()

    service = auditor.token("sdk-py", "service")
    child = subprocess.run([sys.executable, str(Path(__file__).with_name("child_relay.py")), dialect, name, auditor.url, service])
    assert child.returncode == -signal.SIGKILL
    assert outbox.staged(conn) == committed, "the killed relay deleted nothing"
    conn.commit()
    assert auditor.count_by_actor("sdk-tests", actor_id) == 50, "its batch was delivered"

    relay = outbox.relay(connect, url=auditor.url, token=service, batch=50)
    while relay.relay_once() > 0:
        pass
    assert outbox.staged(conn) == 0
    assert auditor.count_by_actor("sdk-tests", actor_id) == committed
    cur = conn.cursor()
    cur.execute("SELECT producer_id FROM auditlog_outbox_state")
    producer_id = cur.fetchone()[0]
    conn.commit()
    assert summary(auditor.producer(producer_id)) == (committed, committed, 0)
    relay.stop(grace=0)
    conn.close()
