// A relay process killed (SIGKILL, by itself) right after its first batch was
// published and before its rows were deleted: the worst moment for duplicates.
import { createOutbox } from "../dist/index.js";
import { poolFor } from "./outbox-db.mjs";

const [configJson, url, token] = process.argv.slice(2);
const config = JSON.parse(configJson);
const pool = await poolFor(config);
const outbox = createOutbox({ dialect: config.dialect, source: "sdknode" });
const relay = outbox.relay({
  pool, url, token, batch: 50,
  afterPublish: () => process.kill(process.pid, "SIGKILL"),
});
await relay.relayOnce();
