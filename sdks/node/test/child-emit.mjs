// A producer process for the SIGTERM test: emits N events, says so, and keeps
// running until a signal arrives; the emitter's default hooks deliver on SIGTERM.
import { createEmitter } from "../dist/index.js";

const [url, token, spillDir, actorId, count] = process.argv.slice(2);
const audit = createEmitter({ url, token, source: "sdknode", spillDir });
for (let i = 0; i < Number(count); i++) {
  audit.emit({ action: "viewed", actorType: "sdk-tests", actorId, targetType: "items", targetId: i });
}
process.stdout.write(`${audit.producerId}\n`);
setInterval(() => {}, 1000);
