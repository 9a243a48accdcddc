"""The auditor stopped for 30 s mid-run: events spill, then arrive; none lost."""

from __future__ import annotations

import os
import threading
import time

from auditlog import Emitter
from conftest import Auditor, free_port, summary, unique

OUTAGE = float(os.environ.get("AUDITLOG_SDK_OUTAGE_S", "30"))


def test_the_auditor_away_for_30_s_mid_run_loses_nothing(data_dir):
    port = free_port()
    auditor = Auditor(data_dir, port).start()
    try:
        audit = Emitter(url=auditor.url, token=auditor.token("sdk-py", "service"), source="sdkpy",
                        spill_dir=f"{data_dir}/spill", handle_signals=False)
        actor_id = unique("outage")
        emitted = 0
        running = True

        def produce():
            nonlocal emitted
            while running:
                for _ in range(100):
                    audit.emit({"action": "viewed", "actorType": "sdk-tests", "actorId": actor_id,
                                "targetType": "items", "targetId": emitted})
                    emitted += 1
                time.sleep(0.05)

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(2)
        auditor.stop()
        stopped_at = emitted
        time.sleep(OUTAGE)
        spilled, failed = audit.stats.spilled, audit.stats.failed_attempts
        auditor = Auditor(data_dir, port).start()
        time.sleep(2)
        running = False
        producer.join()
        audit.close()
        assert emitted - stopped_at > 1000, "events were emitted during the outage"
        assert spilled > 0 and failed > 0, "the outage's events went to the spill file"
        assert (audit.stats.delivered, audit.stats.dropped) == (emitted, 0)
        assert summary(auditor.wait_for_producer(audit.producer_id, emitted)) == (emitted, emitted, 0)
        assert auditor.count_by_actor("sdk-tests", actor_id) == emitted
    finally:
        auditor.stop()
