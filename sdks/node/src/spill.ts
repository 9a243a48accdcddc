/**
 * The spill file: events wait here, as NDJSON lines already numbered, while the
 * auditor or broker is away; a cursor file records how far delivery has been
 * confirmed, so a restart replays only the rest (the auditor stores each id once).
 * The file names are the Rust emitter's. I/O is synchronous: it runs only while
 * events are backed up, and each write is fsynced before it counts.
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";

const DATA = "spill.ndjson";
const CURSOR = "spill.cursor";
const LOCK = "spill.lock";

export class Spill {
  private fd: number;
  private len: number;
  private cursor: number;

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.lock();
    this.fd = fs.openSync(path.join(dir, DATA), "a+");
    this.len = fs.fstatSync(this.fd).size;
    if (this.len > 0) {
      const last = Buffer.alloc(1);
      fs.readSync(this.fd, last, 0, 1, this.len - 1);
      if (last[0] !== 0x0a) {
        // A line torn by a crash: end it, so the next append starts a line of its own.
        fs.writeSync(this.fd, "\n");
        fs.fsyncSync(this.fd);
        this.len += 1;
      }
    }
    let cursor = 0;
    try {
      cursor = Number.parseInt(fs.readFileSync(path.join(dir, CURSOR), "utf8").trim(), 10) || 0;
    } catch {
      /* no cursor yet */
    }
    this.cursor = Math.min(cursor, this.len);
  }

  /** One process per spill directory: two would interleave and replay each other's events. */
  private lock(): void {
    const file = path.join(this.dir, LOCK);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(file, String(process.pid), { flag: "wx" });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const holder = Number.parseInt(fs.readFileSync(file, "utf8"), 10);
        let alive = false;
        if (holder && holder !== process.pid) {
          try {
            process.kill(holder, 0);
            alive = true;
          } catch {
            alive = false;
          }
        }
        if (alive) {
          throw new Error(`auditlog: the spill directory ${this.dir} is in use by process ${holder}; give each process its own spillDir`);
        }
        fs.rmSync(file, { force: true });
      }
    }
    throw new Error(`auditlog: cannot lock the spill directory ${this.dir}`);
  }

  hasBacklog(): boolean {
    return this.cursor < this.len;
  }

  backlogBytes(): number {
    return this.len - this.cursor;
  }

  /** Appends lines durably (fsynced before it returns). */
  append(lines: readonly string[]): void {
    if (lines.length === 0) return;
    const buffer = Buffer.from(lines.join("\n") + "\n", "utf8");
    let written = 0;
    while (written < buffer.length) written += fs.writeSync(this.fd, buffer, written, buffer.length - written);
    fs.fsyncSync(this.fd);
    this.len += buffer.length;
  }

  /** Up to `max` lines from the cursor on; `end` is what to confirm once they are delivered. */
  readChunk(max: number): { lines: string[]; end: number; unreadable: number } {
    const want = Math.min(this.len - this.cursor, 16 * 1024 * 1024);
    const buffer = Buffer.alloc(want);
    let read = 0;
    while (read < want) {
      const n = fs.readSync(this.fd, buffer, read, want - read, this.cursor + read);
      if (n === 0) break;
      read += n;
    }
    const lines: string[] = [];
    let unreadable = 0;
    let start = 0;
    while (lines.length < max) {
      const nl = buffer.indexOf(0x0a, start);
      if (nl < 0 || nl >= read) break;
      const line = buffer.toString("utf8", start, nl);
      start = nl + 1;
      if (line.length === 0) continue;
      try {
        JSON.parse(line);
        lines.push(line);
      } catch {
        unreadable++;
      }
    }
    return { lines, end: this.cursor + start, unreadable };
  }

  /** Everything before `end` was delivered; empties the file once all of it was. */
  confirm(end: number): void {
    this.cursor = Math.min(end, this.len);
    if (this.cursor === this.len) {
      fs.ftruncateSync(this.fd, 0);
      this.len = 0;
      this.cursor = 0;
    }
    const tmp = path.join(this.dir, CURSOR + ".tmp");
    fs.writeFileSync(tmp, String(this.cursor));
    fs.renameSync(tmp, path.join(this.dir, CURSOR));
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(path.join(this.dir, LOCK), { force: true });
  }
}
