// emit() cost per call (p50/p99, ns) and delivered events/s for one transport.
// Usage: node bench/emit.mjs <http|amqp> <events> <auditor url> <token> <amqp url> <exchange> <queue>
// (the queue a classic one, as the auditor of bench.sh declares it)
import { createEmitter } from "../dist/index.js";

const [kind, count, url, token, amqpUrl, exchange, queue] = process.argv.slice(2);
const n = Number(count);
const spillDir = `${process.env.TMPDIR ?? "/tmp"}/auditlog-bench-node-${process.pid}`;
const audit = createEmitter(kind === "http"
  ? { url, token, source: "benchnode", spillDir, handleSignals: false }
  : { amqpUrl, exchange, queue, deadLetterQueue: `${queue}.dlq`, queueType: "classic", source: "benchnode", spillDir, handleSignals: false });
const costs = new Float64Array(n);
const start = process.hrtime.bigint();
for (let i = 0; i < n; i++) {
  const t0 = process.hrtime.bigint();
  audit.emit({ action: "viewed", actorType: "users", actorId: 1, targetType: "users", targetId: i });
  costs[i] = Number(process.hrtime.bigint() - t0);
  // Yield now and then, as a service between requests does, so delivery overlaps.
  if (i % 2000 === 1999) await new Promise((r) => setImmediate(r));
}
await audit.close();
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
costs.sort();
const pct = (p) => Math.round(costs[Math.min(n - 1, Math.floor(n * p))]);
const s = audit.stats();
console.log(JSON.stringify({ sdk: "node", transport: kind, events: n, emit_p50_ns: pct(0.5), emit_p99_ns: pct(0.99),
  events_per_s: Math.round(n / seconds), delivered: s.delivered, dropped: s.dropped }));
