"""A process that gets SIGTERM right after emitting loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from conftest import summary, unique


def test_sigterm_right_after_emitting_delivers_every_event(auditor, data_dir):
    actor_id, count = unique("sigterm"), 30_000
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("child_emit.py")), auditor.url,
         auditor.token("sdk-py", "service"), f"{data_dir}/spill", actor_id, str(count)],
        stdout=subprocess.PIPE, text=True,
    )
    producer_id = child.stdout.readline().strip()
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == -signal.SIGTERM, "the process ends as SIGTERM would end it"
    assert summary(auditor.wait_for_producer(producer_id, count, timeout=10)) == (count, count, 0)
    assert auditor.count_by_actor("sdk-tests", actor_id) == count
