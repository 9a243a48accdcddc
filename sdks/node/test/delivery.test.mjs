// 20 000 events over HTTP ingest and over RabbitMQ to the real auditor: each
// stored exactly once, with no gap in the producer's numbers.
import assert from "node:assert/strict";
import test from "node:test";

import { createEmitter } from "../dist/index.js";
import {
  amqpOptions, cleanup, dropAmqp, countByActor, freePort, startAuditor, tempDir, token, unique, waitForProducer,
} from "./harness.mjs";

const EVENTS = 20_000;

async function emitAll(audit, actorId) {
  for (let i = 0; i < EVENTS; i++) {
    audit.emit({ action: "viewed", actorType: "sdk-tests", actorId, targetType: "items", targetId: i });
    // A service emits between other work: let the loop breathe now and then.
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
}

for (const transport of ["http", "amqp"]) {
  test(`${EVENTS} events over ${transport} are each stored once, without a gap`, async () => {
    const dataDir = tempDir(transport);
    const amqp = transport === "amqp" ? { exchange: unique("sdk-node-ex"), queue: unique("sdk-node-q") } : undefined;
    const auditor = await startAuditor({ dataDir, port: await freePort(), amqp });
    try {
      const operator = token(dataDir, "1", "operator");
      const actorId = unique(transport);
      const options = transport === "http"
        ? { url: auditor.url, token: token(dataDir, "sdk-node", "service") }
        : amqpOptions(amqp);
      const audit = createEmitter({ ...options, source: "sdknode", spillDir: `${dataDir}/spill`, handleSignals: false });
      await emitAll(audit, actorId);
      await audit.close();
      const stats = audit.stats();
      assert.equal(stats.emitted, EVENTS);
      assert.equal(stats.delivered, EVENTS);
      assert.equal(stats.dropped, 0);
      const report = await waitForProducer(auditor.url, operator, audit.producerId, EVENTS);
      assert.deepEqual(
        { events: report.events, lastSeq: report.lastSeq, missing: report.missing },
        { events: EVENTS, lastSeq: EVENTS, missing: 0 },
      );
      assert.equal(await countByActor(auditor.url, operator, "sdk-tests", actorId), EVENTS);
    } finally {
      await auditor.stop();
      if (amqp) await dropAmqp(amqp);
      cleanup(dataDir);
    }
  });
}
