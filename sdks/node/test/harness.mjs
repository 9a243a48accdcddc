// Test harness: the real `auditlog` binary on a free port with a fresh data
// directory, tokens minted by `auditlog token`, and the auditor's own reports
// (GET /api/producers, event counts) to check what was stored.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, "../../..");
export const BIN = process.env.AUDITLOG_BIN ?? path.join(REPO, "target/debug/auditlog");
export const AMQP_URL = process.env.AUDITLOG_TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2f";
export const PG_URL = process.env.AUDITLOG_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const MYSQL = { host: "127.0.0.1", port: 3306, user: "root", password: "" };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tempDir(label) {
  return mkdtempSync(path.join(tmpdir(), `auditlog-node-${label}-`));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A unique name for this run's queues, databases, actors. */
export function unique(label) {
  return `${label}_${process.pid}_${Date.now().toString(36)}`;
}

/** `auditlog auditor` on `port`; with `amqp` (`exchange`, `queue`, optional `queueType`, default classic), consuming its own exchange and queue. */
export async function startAuditor({ dataDir, port, amqp }) {
  const args = ["auditor", "--auditor-addr", `127.0.0.1:${port}`, "--data-dir", dataDir];
  if (amqp) {
    args.push("--amqp-url", AMQP_URL, "--amqp-exchange", amqp.exchange, "--amqp-queue", amqp.queue,
      "--amqp-dead-letter-queue", `${amqp.queue}.dead-letter`, "--amqp-queue-type", amqp.queueType ?? "classic");
  }
  const child = spawn(BIN, args, {
    env: { ...process.env, AUDITLOG_LOG: "warn,lapin::channel=off", AUDITLOG_LOG_FORMAT: "human" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  child.stdout.resume();
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`auditlog auditor exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error("the auditor did not start in 60 s");
    await sleep(100);
  }
  return {
    url,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

export function token(dataDir, subject, role) {
  return execFileSync(BIN, ["token", "--data-dir", dataDir, "--subject", subject, "--role", role, "--ttl", "2h"], {
    encoding: "utf8",
  }).trim();
}

async function getJson(url, operatorToken) {
  const r = await fetch(url, { headers: { authorization: `Bearer ${operatorToken}` } });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

/** The auditor's completeness report for one producer id (operators only: producers deliver for every tenant). */
export async function producer(auditorUrl, operatorToken, producerId) {
  const doc = await getJson(`${auditorUrl}/api/producers`, operatorToken);
  return doc.data.find((p) => p.id === producerId)?.attributes ?? null;
}

/** Stored events by one actor. */
export async function countByActor(auditorUrl, operatorToken, actorType, actorId) {
  const q = `filter[actorType]=${encodeURIComponent(actorType)}&filter[actorId]=${encodeURIComponent(actorId)}&count=true&page[size]=1`;
  const doc = await getJson(`${auditorUrl}/api/data-events?${q}`, operatorToken);
  return doc.meta.total;
}

/** Waits until the producer's report shows `n` events (or the deadline), and returns it. */
export async function waitForProducer(auditorUrl, operatorToken, producerId, n, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let report = null;
  while (Date.now() < deadline) {
    report = await producer(auditorUrl, operatorToken, producerId);
    if (report && report.events >= n) return report;
    await sleep(200);
  }
  return report;
}

export function cleanup(dir) {
  rmSync(dir, { recursive: true, force: true });
}

/** Emitter options publishing to a test's own exchange and queue (`amqp` as for startAuditor). */
export function amqpOptions(amqp) {
  return {
    amqpUrl: AMQP_URL,
    exchange: amqp.exchange,
    queue: amqp.queue,
    deadLetterQueue: `${amqp.queue}.dead-letter`,
    queueType: amqp.queueType ?? "classic",
  };
}

/** Deletes a test's exchange and queues from RabbitMQ. */
export async function dropAmqp({ exchange, queue }) {
  const amqp = await import("amqplib");
  const connection = await amqp.connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    await channel.deleteQueue(queue);
    await channel.deleteQueue(`${queue}.dead-letter`);
    await channel.deleteExchange(exchange);
    await channel.close();
  } finally {
    await connection.close();
  }
}
