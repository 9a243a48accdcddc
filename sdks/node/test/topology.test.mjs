// The RabbitMQ transport declares the auditor's queue and binding as the Rust
// publisher does: events published before any auditor ever ran wait in the queue
// (a quorum queue by default, with the Rust publisher's arguments) and reach the
// auditor once it starts; an existing queue (the prototype's non-durable classic
// one) is adopted as it was declared.
import assert from "node:assert/strict";
import test from "node:test";

import { createEmitter, DELIVERY_LIMIT } from "../dist/index.js";
import {
  AMQP_URL, cleanup, countByActor, dropAmqp, freePort, startAuditor, tempDir, token, unique, waitForProducer,
} from "./harness.mjs";

const EVENTS = 2_000;

/** Runs `fn(channel)` on a channel of its own; resolves to "ok" or to the broker's refusal. */
async function onChannel(fn) {
  const amqp = await import("amqplib");
  const connection = await amqp.connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    channel.on("error", () => {});
    try {
      const result = await fn(channel);
      await channel.close();
      return result ?? "ok";
    } catch (err) {
      return `refused: ${err.message}`;
    }
  } finally {
    await connection.close();
  }
}

/** Emits EVENTS events with no auditor running; returns the closed emitter. */
async function emitWithoutAuditor(names, actorId, extra = {}) {
  const dataDir = tempDir("topology-emit");
  try {
    const audit = createEmitter({
      amqpUrl: AMQP_URL, exchange: names.exchange, queue: names.queue, deadLetterQueue: `${names.queue}.dead-letter`,
      source: "sdknode", spillDir: `${dataDir}/spill`, handleSignals: false, log: () => {}, ...extra,
    });
    for (let i = 0; i < EVENTS; i++) {
      audit.emit({ action: "created", actorType: "sdk-tests", actorId, targetType: "items", targetId: i });
    }
    await audit.close();
    return audit;
  } finally {
    cleanup(dataDir);
  }
}

/** Starts the auditor on `names` for the first time and checks that every event arrived once, without a gap. */
async function auditorReceivesAll(names, audit, actorId) {
  const dataDir = tempDir("topology-auditor");
  const auditor = await startAuditor({ dataDir, port: await freePort(), amqp: names });
  try {
    const operator = token(dataDir, "1", "operator");
    const report = await waitForProducer(auditor.url, operator, audit.producerId, EVENTS);
    assert.deepEqual(
      { events: report?.events, lastSeq: report?.lastSeq, missing: report?.missing },
      { events: EVENTS, lastSeq: EVENTS, missing: 0 },
    );
    assert.equal(await countByActor(auditor.url, operator, "sdk-tests", actorId), EVENTS);
  } finally {
    await auditor.stop();
    cleanup(dataDir);
  }
}

test("events published before any auditor ran wait in a quorum queue declared as the Rust publisher does", async () => {
  const names = { exchange: unique("sdk-node-fresh-ex"), queue: unique("sdk-node-fresh-q"), queueType: "quorum" };
  const actorId = unique("fresh");
  try {
    // The default queue type, quorum: no queueType given.
    const audit = await emitWithoutAuditor(names, actorId);
    const stats = audit.stats();
    assert.deepEqual({ delivered: stats.delivered, failedAttempts: stats.failedAttempts, spilled: stats.spilled },
      { delivered: EVENTS, failedAttempts: 0, spilled: 0 }, "every batch was routed and confirmed at the first attempt");

    const waiting = await onChannel((c) => c.checkQueue(names.queue));
    assert.ok(waiting.messageCount > 0, `the queue holds the batches (${JSON.stringify(waiting)})`);
    // RabbitMQ accepts a re-declaration only with equivalent arguments: the queue is durable, a quorum queue
    // with the delivery limit and dead-letter routing the Rust publisher declares...
    assert.equal(await onChannel((c) => c.assertQueue(names.queue, { durable: true, arguments: {
      "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
      "x-dead-letter-exchange": "", "x-dead-letter-routing-key": `${names.queue}.dead-letter`,
    } }).then(() => "ok")), "ok");
    // ...and not a classic one; its dead-letter queue is a quorum queue too.
    assert.match(await onChannel((c) => c.assertQueue(names.queue, { durable: true, arguments: { "x-queue-type": "classic" } })), /refused: .*PRECONDITION_FAILED/);
    assert.equal(await onChannel((c) => c.assertQueue(`${names.queue}.dead-letter`, { durable: true, arguments: { "x-queue-type": "quorum" } }).then(() => "ok")), "ok");

    await auditorReceivesAll(names, audit, actorId);
  } finally {
    await dropAmqp(names);
  }
});

test("an existing non-durable classic queue and exchange (the prototype's) are adopted as they were declared", async () => {
  const names = { exchange: unique("sdk-node-proto-ex"), queue: unique("sdk-node-proto-q"), queueType: "quorum" };
  const actorId = unique("adopt");
  try {
    await onChannel(async (c) => {
      await c.assertExchange(names.exchange, "topic", { durable: false });
      await c.assertQueue(names.queue, { durable: false });
    });
    // Asked for quorum queues, the transport still publishes into the queue that exists.
    const audit = await emitWithoutAuditor(names, actorId, { queueType: "quorum" });
    assert.equal(audit.stats().delivered, EVENTS);
    assert.equal(audit.stats().failedAttempts, 0);
    // Still non-durable and classic: a declaration as the prototype made it is equivalent.
    assert.equal(await onChannel((c) => c.assertQueue(names.queue, { durable: false }).then(() => "ok")), "ok");
    assert.equal(await onChannel((c) => c.assertExchange(names.exchange, "topic", { durable: false }).then(() => "ok")), "ok");

    await auditorReceivesAll(names, audit, actorId);
  } finally {
    await dropAmqp(names);
  }
});
