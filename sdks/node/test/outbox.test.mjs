// The outbox helpers against the real PostgreSQL and MariaDB: committed changes
// have exactly one event each, a rolled-back one none, and a relay killed between
// publishing and deleting duplicates nothing (the auditor stores each id once).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import test from "node:test";

import { createOutbox, diff } from "../dist/index.js";
import { freshDatabase, transaction } from "./outbox-db.mjs";
import { cleanup, countByActor, freePort, producer, startAuditor, tempDir, token, unique } from "./harness.mjs";

for (const dialect of ["postgres", "mysql"]) {
  test(`outbox on ${dialect}: commit has one event, rollback none, a relay killed mid-publish duplicates nothing`, async () => {
    const dataDir = tempDir(`outbox-${dialect}`);
    const auditor = await startAuditor({ dataDir, port: await freePort() });
    const db = await freshDatabase(dialect, unique(`sdk_node_${dialect}`).toLowerCase());
    try {
      const operator = token(dataDir, "1", "operator");
      const service = token(dataDir, "sdk-node", "service");
      const outbox = createOutbox({ dialect, source: "sdknode" });
      await outbox.migrate(db.pool);
      await db.pool.query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
      const actorId = unique("outbox");
      const sql = (s) => (dialect === "postgres" ? s.replace(/\?/g, (_, i) => "$" + (s.slice(0, i).split("?").length)) : s);
      const committed = 120;
      for (let id = 1; id <= committed; id++) {
        await transaction(dialect, db.pool, async (tx) => {
          await tx.query(sql("INSERT INTO users (id, name) VALUES (?, ?)"), [id, `user ${id}`]);
          await outbox.stage(tx, {
            action: "created", actorType: "sdk-tests", actorId, targetType: "users", targetId: id,
            changes: diff(null, { name: `user ${id}` }),
          });
        });
      }
      await assert.rejects(transaction(dialect, db.pool, async (tx) => {
        await tx.query(sql("INSERT INTO users (id, name) VALUES (?, ?)"), [999, "ghost"]);
        await outbox.stage(tx, { action: "created", actorType: "sdk-tests", actorId, targetType: "users", targetId: 999 });
        throw new Error("the application changes its mind");
      }));
      assert.equal(await outbox.staged(db.pool), committed);

      // A relay process dies right after its first batch (50 events) was published.
      const child = spawn(process.execPath, [
        new URL("./child-relay.mjs", import.meta.url).pathname, JSON.stringify(db.config), auditor.url, service,
      ], { stdio: ["ignore", "inherit", "inherit"] });
      const { signal } = await new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
      assert.equal(signal, "SIGKILL");
      assert.equal(await outbox.staged(db.pool), committed, "the killed relay deleted nothing");
      assert.equal(await countByActor(auditor.url, operator, "sdk-tests", actorId), 50, "its batch was delivered");

      // A new relay publishes everything, the first 50 again with the same ids and numbers.
      const relay = outbox.relay({ pool: db.pool, url: auditor.url, token: service, batch: 50 });
      while ((await relay.relayOnce()) > 0);
      assert.equal(await outbox.staged(db.pool), 0);
      assert.equal(await countByActor(auditor.url, operator, "sdk-tests", actorId), committed, "each committed change once, the rolled-back one never");
      const [state] = dialect === "postgres"
        ? (await db.pool.query("SELECT producer_id FROM auditlog_outbox_state")).rows
        : (await db.pool.query("SELECT producer_id FROM auditlog_outbox_state"))[0];
      const report = await producer(auditor.url, operator, state.producer_id);
      assert.deepEqual(
        { events: report.events, lastSeq: report.lastSeq, missing: report.missing },
        { events: committed, lastSeq: committed, missing: 0 },
      );
      await relay.stop(0);
    } finally {
      await db.pool.end();
      await db.drop();
      await auditor.stop();
      cleanup(dataDir);
    }
  });
}
