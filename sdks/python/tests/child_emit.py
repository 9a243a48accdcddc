"""A producer process for the SIGTERM test: emits N events, prints its producer id,
and waits; the emitter's default SIGTERM hook delivers everything."""

import sys
import time

from auditlog import Emitter

url, token, spill_dir, actor_id, count = sys.argv[1:]
audit = Emitter(url=url, token=token, source="sdkpy", spill_dir=spill_dir)
for i in range(int(count)):
    audit.emit({"action": "viewed", "actorType": "sdk-tests", "actorId": actor_id, "targetType": "items", "targetId": i})
print(audit.producer_id, flush=True)
while True:
    time.sleep(1)
