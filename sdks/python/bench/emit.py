"""emit() cost per call (p50/p99, ns) and delivered events/s, for one emitter and transport.

Usage: python bench/emit.py <sync|async> <http|amqp> <events> <auditor url> <token> <amqp url> <exchange> <queue>
(the queue a classic one, as the auditor of bench.sh declares it)"""

import asyncio
import json
import os
import sys
import tempfile
import time

from auditlog import AsyncEmitter, Emitter

flavour, kind, count, url, token, amqp_url, exchange, queue = sys.argv[1:]
n = int(count)
spill = os.path.join(tempfile.gettempdir(), f"auditlog-bench-py-{os.getpid()}")
opts = {"url": url, "token": token} if kind == "http" else {
    "amqp_url": amqp_url, "exchange": exchange, "queue": queue, "dead_letter_queue": f"{queue}.dlq", "queue_type": "classic"}
costs = [0] * n
clock = time.perf_counter_ns


def event(i):
    return {"action": "viewed", "actorType": "users", "actorId": 1, "targetType": "users", "targetId": i}


def report(audit, seconds):
    costs.sort()
    pct = lambda p: costs[min(n - 1, int(n * p))]  # noqa: E731
    print(json.dumps({"sdk": f"python-{flavour}", "transport": kind, "events": n, "emit_p50_ns": pct(0.5),
                      "emit_p99_ns": pct(0.99), "events_per_s": round(n / seconds),
                      "delivered": audit.stats.delivered, "dropped": audit.stats.dropped}))


if flavour == "sync":
    audit = Emitter(source="benchpy", spill_dir=spill, handle_signals=False, **opts)
    start = time.perf_counter()
    for i in range(n):
        t0 = clock()
        audit.emit(event(i))
        costs[i] = clock() - t0
    audit.close()
    report(audit, time.perf_counter() - start)
else:
    async def main():
        audit = AsyncEmitter(source="benchpy", spill_dir=spill, **opts)
        start = time.perf_counter()
        for i in range(n):
            t0 = clock()
            audit.emit(event(i))
            costs[i] = clock() - t0
            if i % 2000 == 1999:
                await asyncio.sleep(0)
        await audit.close()
        report(audit, time.perf_counter() - start)

    asyncio.run(main())
