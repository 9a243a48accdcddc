"""Test harness: the real ``auditlog`` binary on a free port with a fresh data
directory, tokens from ``auditlog token``, and the auditor's own reports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ.get("AUDITLOG_BIN", str(REPO / "target/debug/auditlog"))
AMQP_URL = os.environ.get("AUDITLOG_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
PG_DSN = os.environ.get("AUDITLOG_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def unique(label: str) -> str:
    return f"{label}_{os.getpid()}_{int(time.time() * 1000) % 10**9}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Auditor:
    data_dir: str
    port: int
    amqp: dict | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Auditor":
        args = [BIN, "auditor", "--auditor-addr", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
        if self.amqp:
            args += ["--amqp-url", AMQP_URL, "--amqp-exchange", self.amqp["exchange"], "--amqp-queue", self.amqp["queue"],
                     "--amqp-dead-letter-queue", self.amqp["queue"] + ".dead-letter",
                     "--amqp-queue-type", self.amqp.get("queue_type", "classic")]
        env = {**os.environ, "AUDITLOG_LOG": "warn,lapin::channel=off", "AUDITLOG_LOG_FORMAT": "human"}
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"auditlog auditor exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return self
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("the auditor did not start in 60 s")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)

    def token(self, subject: str, role: str) -> str:
        return subprocess.check_output(
            [BIN, "token", "--data-dir", self.data_dir, "--subject", subject, "--role", role, "--ttl", "2h"], text=True
        ).strip()

    def get(self, path: str) -> dict:
        request = urllib.request.Request(self.url + path, headers={"authorization": f"Bearer {self.operator}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    @property
    def operator(self) -> str:
        """An operator's token: the producers' report is for operators only (producers deliver for every tenant)."""
        if not hasattr(self, "_operator"):
            self._operator = self.token("1", "operator")
        return self._operator

    def producer(self, producer_id: str) -> dict | None:
        for p in self.get("/api/producers")["data"]:
            if p["id"] == producer_id:
                return p["attributes"]
        return None

    def wait_for_producer(self, producer_id: str, n: int, timeout: float = 60) -> dict | None:
        deadline = time.time() + timeout
        report = None
        while time.time() < deadline:
            report = self.producer(producer_id)
            if report and report["events"] >= n:
                return report
            time.sleep(0.2)
        return report

    def count_by_actor(self, actor_type: str, actor_id: str) -> int:
        q = urllib.parse.urlencode({"filter[actorType]": actor_type, "filter[actorId]": actor_id, "count": "true", "page[size]": "1"})
        return self.get(f"/api/data-events?{q}")["meta"]["total"]


def amqp_options(names: dict) -> dict:
    """Emitter keywords publishing to a test's own exchange and queue (the auditor's names)."""
    return {"amqp_url": AMQP_URL, "exchange": names["exchange"], "queue": names["queue"],
            "dead_letter_queue": names["queue"] + ".dead-letter", "queue_type": names.get("queue_type", "classic")}


def drop_amqp(names: dict) -> None:
    """Deletes a test's exchange and queues from RabbitMQ."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.queue_delete(names["queue"])
    channel.queue_delete(names["queue"] + ".dead-letter")
    channel.exchange_delete(names["exchange"])
    connection.close()


def summary(report: dict | None) -> tuple:
    return (report or {}).get("events"), (report or {}).get("lastSeq"), (report or {}).get("missing")


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="auditlog-py-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def auditor(data_dir):
    a = Auditor(data_dir, free_port()).start()
    yield a
    a.stop()


@pytest.fixture
def amqp_auditor(data_dir):
    names = {"exchange": unique("sdk-py-ex"), "queue": unique("sdk-py-q")}
    a = Auditor(data_dir, free_port(), amqp=names).start()
    yield a
    a.stop()
    drop_amqp(names)
