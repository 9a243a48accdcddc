// The shared validation vectors (sdks/vectors/events.json), and the helpers that
// need no services: diff, UUIDv7, emit's own checks.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import test from "node:test";

import { AuditValidationError, check, createEmitter, diff, uuidv7, withRequestId } from "../dist/index.js";
import { REPO } from "./harness.mjs";

function expand(value) {
  if (Array.isArray(value)) return value.map(expand);
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$repeat") return value.$repeat[0].repeat(value.$repeat[1]);
    return Object.fromEntries(keys.map((k) => [k, expand(value[k])]));
  }
  return value;
}

test("every shared vector gets its recorded verdict and field", () => {
  const doc = JSON.parse(readFileSync(`${REPO}/sdks/vectors/events.json`, "utf8"));
  const failures = [];
  for (const c of doc.vectors) {
    const verdict = check(expand(c.event));
    if (verdict.valid !== c.valid || (!c.valid && verdict.field !== c.field)) {
      failures.push(`${c.name}: expected ${c.valid}/${c.field}, got ${JSON.stringify(verdict)}`);
    }
  }
  assert.ok(doc.vectors.length > 50);
  assert.deepEqual(failures, []);
});

test("diff keeps only the fields that changed, and masks personal ones", () => {
  const before = { name: "Ann", agreedTos: false, tags: ["a"], email: "a@x.io" };
  const after = { name: "Ann", agreedTos: true, tags: ["a"], email: "b@x.io" };
  assert.deepEqual(diff(before, after, { personal: ["email"] }), {
    agreedTos: { prev: false, next: true },
    email: { prev: null, next: null, masked: true },
  });
  assert.deepEqual(diff(before, after, { fields: ["name", "tags"] }), {});
  assert.deepEqual(diff(null, { name: "Ann" }), { name: { prev: null, next: "Ann" } });
  assert.deepEqual(diff({ name: "Ann" }, null), { name: { prev: "Ann", next: null } });
  assert.deepEqual(diff({ a: { x: 1, y: 2 } }, { a: { y: 2, x: 1 } }), {});
});

test("UUIDv7 ids carry the time and the version", () => {
  const id = uuidv7(1_764_300_000_000);
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(parseInt(id.replace(/-/g, "").slice(0, 12), 16), 1_764_300_000_000);
  assert.notEqual(uuidv7(), uuidv7());
});

test("emit throws naming the field for an invalid event, and fills id, timestamp, source and requestId", async () => {
  const sent = [];
  const audit = createEmitter({
    source: "unit",
    spillDir: false,
    handleSignals: false,
    lingerMs: 0,
    transport: { publish: async (lines) => void sent.push(...lines), close: async () => {} },
  });
  assert.throws(() => audit.emit({ action: "exploded", actorType: "users", actorId: 1, targetType: "users", targetId: 2 }),
    (err) => err instanceof AuditValidationError && err.field === "action");
  assert.throws(() => audit.emit({ action: "viewed", actorType: "users", actorId: 1, targetType: "users", targetId: 2, producerSeq: 4 }),
    (err) => err.field === "producerSeq");
  const id = withRequestId("req-7", () => audit.emit({ action: "viewed", actorType: "users", actorId: 1, targetType: "users", targetId: 2 }));
  await audit.close();
  assert.equal(sent.length, 1);
  const event = JSON.parse(sent[0]);
  assert.equal(event.id, id);
  assert.equal(event.source, "unit");
  assert.equal(event.requestId, "req-7");
  assert.equal(event.producerSeq, 1);
  assert.equal(event.producerId, audit.producerId);
  assert.ok(Math.abs(event.timestamp - Date.now()) < 5000);
  assert.deepEqual(audit.stats().emitted, 1);
});

test("emit carries tenantId to the wire as given, leaves it out when absent, and refuses an invalid one", async () => {
  const sent = [];
  const audit = createEmitter({
    source: "unit",
    spillDir: false,
    handleSignals: false,
    lingerMs: 0,
    transport: { publish: async (lines) => void sent.push(...lines), close: async () => {} },
  });
  const event = { action: "viewed", actorType: "users", actorId: 1, targetType: "users", targetId: 2 };
  for (const bad of ["", "acme eu", "acme/eu", "acmé", "t".repeat(65), 7, "acme\n"]) {
    assert.throws(() => audit.emit({ ...event, tenantId: bad }),
      (err) => err instanceof AuditValidationError && err.field === "tenantId", JSON.stringify(bad));
  }
  audit.emit({ ...event, tenantId: "acme-1.eu_west" });
  audit.emit(event);
  await audit.close();
  assert.equal(sent.length, 2);
  assert.equal(JSON.parse(sent[0]).tenantId, "acme-1.eu_west");
  assert.equal("tenantId" in JSON.parse(sent[1]), false);
  assert.equal(audit.stats().emitted, 2);
});
