// A process that gets SIGTERM right after emitting loses nothing: the default
// hook closes the emitter (delivering everything) before the process ends.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import test from "node:test";

import { cleanup, countByActor, freePort, startAuditor, tempDir, token, unique, waitForProducer } from "./harness.mjs";

test("SIGTERM right after emitting: close() delivers every event before the process exits", async () => {
  const dataDir = tempDir("sigterm");
  const auditor = await startAuditor({ dataDir, port: await freePort() });
  try {
    const operator = token(dataDir, "1", "operator");
    const actorId = unique("sigterm");
    const count = 30_000;
    const child = spawn(process.execPath, [
      new URL("./child-emit.mjs", import.meta.url).pathname,
      auditor.url, token(dataDir, "sdk-node", "service"), `${dataDir}/spill`, actorId, String(count),
    ], { stdio: ["ignore", "pipe", "inherit"] });
    const producerId = await new Promise((resolve) => {
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        if (out.includes("\n")) resolve(out.trim());
      });
    });
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    child.kill("SIGTERM");
    const { signal } = await exited;
    assert.equal(signal, "SIGTERM", "the process ends as SIGTERM would end it");
    const report = await waitForProducer(auditor.url, operator, producerId, count, 10_000);
    assert.deepEqual(
      { events: report?.events, lastSeq: report?.lastSeq, missing: report?.missing },
      { events: count, lastSeq: count, missing: 0 },
    );
    assert.equal(await countByActor(auditor.url, operator, "sdk-tests", actorId), count);
  } finally {
    await auditor.stop();
    cleanup(dataDir);
  }
});
