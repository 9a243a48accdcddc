/**
 * UUIDv7 ids (RFC 9562): 48 bits of milliseconds, then random bits, from a pool of
 * random bytes refilled 4 KiB at a time so that an id costs no system call.
 * @module
 */
import { randomFillSync } from "node:crypto";

const pool = Buffer.alloc(4096);
let offset = pool.length;
const HEX: string[] = [];
for (let i = 0; i < 256; i++) HEX.push((i + 0x100).toString(16).slice(1));

/** A fresh UUIDv7 at `ms` (now by default). */
export function uuidv7(ms: number = Date.now()): string {
  if (offset + 10 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const r = offset;
  offset += 10;
  const t = Math.floor(ms);
  const hi = Math.floor(t / 0x10000);
  const h = hi.toString(16).padStart(8, "0").slice(-8);
  const l = (t % 0x10000).toString(16).padStart(4, "0");
  return (
    h + "-" + l + "-" +
    HEX[0x70 | (pool[r] & 0x0f)] + HEX[pool[r + 1]] + "-" +
    HEX[0x80 | (pool[r + 2] & 0x3f)] + HEX[pool[r + 3]] + "-" +
    HEX[pool[r + 4]] + HEX[pool[r + 5]] + HEX[pool[r + 6]] + HEX[pool[r + 7]] + HEX[pool[r + 8]] + HEX[pool[r + 9]]
  );
}
