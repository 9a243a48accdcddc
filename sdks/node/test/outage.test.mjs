// The auditor stopped for 30 s in the middle of a run: the emitter spills what
// arrives meanwhile, delivers it once the auditor is back, and loses nothing.
import assert from "node:assert/strict";
import test from "node:test";

import { createEmitter } from "../dist/index.js";
import { cleanup, countByActor, freePort, sleep, startAuditor, tempDir, token, unique, waitForProducer } from "./harness.mjs";

const OUTAGE_MS = Number(process.env.AUDITLOG_SDK_OUTAGE_S ?? 30) * 1000;

test("the auditor away for 30 s mid-run: events spill, then arrive, none lost", { timeout: OUTAGE_MS + 120_000 }, async () => {
  const dataDir = tempDir("outage");
  const port = await freePort();
  let auditor = await startAuditor({ dataDir, port });
  try {
    const operator = token(dataDir, "1", "operator");
    const audit = createEmitter({
      url: auditor.url,
      token: token(dataDir, "sdk-node", "service"),
      source: "sdknode",
      spillDir: `${dataDir}/spill`,
      handleSignals: false,
      log: () => {},
    });
    const actorId = unique("outage");
    let emitted = 0;
    let running = true;
    const producerLoop = (async () => {
      while (running) {
        for (let i = 0; i < 100; i++) {
          audit.emit({ action: "viewed", actorType: "sdk-tests", actorId, targetType: "items", targetId: emitted++ });
        }
        await sleep(50);
      }
    })();
    await sleep(2000);
    await auditor.stop();
    const stoppedAt = emitted;
    await sleep(OUTAGE_MS);
    const duringOutage = audit.stats();
    auditor = await startAuditor({ dataDir, port });
    await sleep(2000);
    running = false;
    await producerLoop;
    await audit.close();
    const stats = audit.stats();
    assert.ok(emitted - stoppedAt > 1000, "events were emitted during the outage");
    assert.ok(duringOutage.spilled > 0, "the outage's events went to the spill file");
    assert.ok(duringOutage.failedAttempts > 0);
    assert.equal(stats.dropped, 0);
    assert.equal(stats.delivered, emitted);
    const report = await waitForProducer(auditor.url, operator, audit.producerId, emitted);
    assert.deepEqual(
      { events: report.events, lastSeq: report.lastSeq, missing: report.missing },
      { events: emitted, lastSeq: emitted, missing: 0 },
    );
    assert.equal(await countByActor(auditor.url, operator, "sdk-tests", actorId), emitted);
  } finally {
    await auditor.stop();
    cleanup(dataDir);
  }
});
