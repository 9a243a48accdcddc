/**
 * The emitter: `emit(event)` checks and enqueues the event and returns at once;
 * one background loop batches (size and linger), numbers each event with the
 * producer id and the next sequence number as it leaves the queue, publishes,
 * retries with backoff, and while the transport is away writes what arrives to
 * the spill file, replaying it in order when the transport is back.
 * @module
 */
import * as path from "node:path";

import { currentRequestId } from "./context.js";
import { AuditValidationError, validate, type DataEvent } from "./event.js";
import { uuidv7 } from "./ids.js";
import { Spill } from "./spill.js";
import { Backoff, makeTransport, type Logger, type Transport, type TransportOptions } from "./transport.js";

/** Options of {@link createEmitter}: a transport (`url` + `token`, or `amqpUrl`), a `source`, and tuning. */
export interface EmitterOptions extends TransportOptions {
  /** The emitting service, e.g. `billing`: each event's `source` and the start of the producer id. With RabbitMQ, the routing key is `<source>.data.mutated`, so no dots. */
  source: string;
  /** The producer id its events are numbered under (default `<source>/<UUIDv7>`, new at each start). */
  producerId?: string;
  /** Most events per batch (default 5 000). */
  maxBatch?: number;
  /** How long a batch that is not full waits for more events, in ms (default 20). */
  lingerMs?: number;
  /** Events held in memory (default 65 536). When it is full, the queue goes to the spill file (or, without one, the event is dropped and counted). */
  queueCapacity?: number;
  /** Directory of the spill file (default `.auditlog-spill/<source>` in the working directory); `false` keeps events in memory only. One process per directory. */
  spillDir?: string | false;
  /** How long close() keeps retrying before leaving the rest in the spill file (or dropping it without one), in ms (default 10 000). */
  shutdownGraceMs?: number;
  /** Longest wait for one batch's confirmation, in ms (default 30 000). */
  publishTimeoutMs?: number;
  /** Close (deliver everything) on SIGTERM, SIGINT and when the event loop empties; spill what is left on process.exit (default true). */
  handleSignals?: boolean;
  /** Where problems are reported (default: console.warn, at most once a second). */
  log?: Logger;
  /** A transport of your own, instead of `url`/`amqpUrl`. */
  transport?: Transport;
}

/** What happened to the emitted events so far. */
export interface EmitterStats {
  /** Accepted by emit(). */
  emitted: number;
  /** Confirmed by the transport (including events replayed from an earlier run's spill). */
  delivered: number;
  /** Written to the spill file. */
  spilled: number;
  /** Lost: a full queue without a spill file, or close() out of time without one. Stays 0 with a spill file. */
  dropped: number;
  /** Publish attempts that failed and were retried. */
  failedAttempts: number;
  /** In memory now: queued and in flight. */
  pending: number;
  /** Bytes waiting in the spill file. */
  spillBacklogBytes: number;
}

const EMITTER_OWNED = ["producerId", "producerSeq"] as const;
const SIGNALS = ["SIGTERM", "SIGINT"] as const;

function rateLimited(): Logger {
  let last = 0;
  let suppressed = 0;
  return (message, detail) => {
    const now = Date.now();
    if (now - last < 1000) {
      suppressed++;
      return;
    }
    last = now;
    const more = suppressed > 0 ? ` (${suppressed} similar message(s) suppressed)` : "";
    suppressed = 0;
    console.warn(message + more, detail ?? "");
  };
}

/** The handle producers call; see {@link createEmitter}. */
export class Emitter {
  /** The producer id this emitter numbers its events under. */
  readonly producerId: string;
  readonly source: string;
  private readonly transport: Transport;
  private readonly spill: Spill | null;
  private readonly log: Logger;
  private readonly maxBatch: number;
  private readonly lingerMs: number;
  private readonly capacity: number;
  private readonly doorbellAt: number;
  private readonly graceMs: number;
  private readonly publishTimeoutMs: number;
  private readonly producerJson: string;

  private queue: string[] = [];
  private head: string[] | null = null;
  private headSpillEnd: number | null = null;
  private seq = 0;
  private failing = false;
  private stopping = false;
  private closed = false;
  private flushing = 0;
  private bell: (() => void) | null = null;
  private idleWaiters: (() => void)[] = [];
  private readonly backoff = new Backoff();
  private readonly loop: Promise<void>;
  private closing: Promise<void> | null = null;
  private readonly counters = { emitted: 0, delivered: 0, spilled: 0, dropped: 0, failedAttempts: 0 };
  private readonly hooks: { event: string; fn: (...args: any[]) => void }[] = [];

  constructor(options: EmitterOptions) {
    if (!options || typeof options.source !== "string" || options.source.length === 0) {
      throw new TypeError("auditlog: `source` (the emitting service's name) is required");
    }
    this.source = options.source;
    this.log = options.log ?? rateLimited();
    this.transport = options.transport ?? makeTransport(options, options.source, this.log);
    this.producerId = options.producerId ?? `${options.source}/${uuidv7()}`;
    this.producerJson = JSON.stringify(this.producerId);
    this.maxBatch = Math.max(1, options.maxBatch ?? 5000);
    this.lingerMs = Math.max(0, options.lingerMs ?? 20);
    this.capacity = Math.max(2, options.queueCapacity ?? 65_536);
    this.doorbellAt = Math.max(1, Math.min(this.maxBatch, Math.floor(this.capacity / 4)));
    this.graceMs = options.shutdownGraceMs ?? 10_000;
    this.publishTimeoutMs = options.publishTimeoutMs ?? 30_000;
    const spillDir = options.spillDir ?? path.join(process.cwd(), ".auditlog-spill", options.source.replace(/[^A-Za-z0-9._-]/g, "_"));
    this.spill = spillDir === false ? null : new Spill(spillDir);
    if (options.handleSignals ?? true) this.installHooks();
    this.loop = this.run().catch((err) => this.log("auditlog: the emitter's loop failed", err));
  }

  /**
   * Records an event: fills `id` (UUIDv7), `timestamp`, `source` and `requestId`
   * when absent, checks it against the contract and enqueues it; returns its id.
   * Never waits and never throws for transport trouble. Throws
   * {@link AuditValidationError} (naming the field) for an event that breaks the
   * contract, which no retry could deliver.
   */
  emit(event: DataEvent): string {
    const e: Record<string, unknown> = Object.assign({}, event) as unknown as Record<string, unknown>;
    for (const field of EMITTER_OWNED) {
      if (e[field] !== undefined) throw new AuditValidationError(field, "is set by the emitter; leave it out");
    }
    if (e.timestamp === undefined || e.timestamp === null) e.timestamp = Date.now();
    if (e.id === undefined || e.id === null) e.id = uuidv7(e.timestamp as number);
    if (e.source === undefined || e.source === null) e.source = this.source;
    if (e.requestId === undefined || e.requestId === null) {
      const requestId = currentRequestId();
      if (requestId !== undefined) e.requestId = requestId;
    }
    const text = validate(e);
    this.counters.emitted++;
    if (this.closed) {
      this.afterClose(text);
      return e.id as string;
    }
    this.queue.push(text);
    const n = this.queue.length;
    if (n >= this.capacity) this.overflow();
    else if (n === 1 || n >= this.doorbellAt) this.ring();
    return e.id as string;
  }

  /** Resolves once everything emitted before the call is delivered (waits while the transport is away). */
  async flush(): Promise<void> {
    if (this.closed) return;
    this.flushing++;
    try {
      while (this.queue.length > 0 || this.head !== null || (this.spill?.hasBacklog() ?? false)) {
        await new Promise<void>((resolve) => {
          this.idleWaiters.push(resolve);
          this.ring();
        });
      }
    } finally {
      this.flushing--;
    }
  }

  /**
   * Delivers everything emitted, retrying for up to `shutdownGraceMs`; what is
   * still undelivered then stays in the spill file for the next start. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopping = true;
      this.ring();
      await this.loop;
      this.closed = true;
      await this.transport.close().catch(() => {});
      this.spill?.close();
      this.removeHooks();
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    })();
    return this.closing;
  }

  /** Counters of what happened to the events so far. */
  stats(): EmitterStats {
    return {
      ...this.counters,
      pending: this.queue.length + (this.head && this.headSpillEnd === null ? this.head.length : 0),
      spillBacklogBytes: this.spill?.backlogBytes() ?? 0,
    };
  }

  // ---- the background loop ------------------------------------------------

  private ring(): void {
    const bell = this.bell;
    if (bell) {
      this.bell = null;
      bell();
    }
  }

  /** Waits for the doorbell, or `ms` (no timer when undefined). */
  private wait(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.bell = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      if (ms !== undefined) {
        timer = setTimeout(() => {
          this.bell = null;
          resolve();
        }, ms);
      }
    });
  }

  /** Takes up to `max` queued events and numbers them. */
  private take(max: number): string[] {
    const n = Math.min(max, this.queue.length);
    const taken = n === this.queue.length ? this.queue : this.queue.slice(0, n);
    this.queue = n === this.queue.length ? [] : this.queue.slice(n);
    for (let i = 0; i < taken.length; i++) {
      const text = taken[i];
      taken[i] = text.slice(0, -1) + ',"producerId":' + this.producerJson + ',"producerSeq":' + ++this.seq + "}";
    }
    return taken;
  }

  private spillQueued(): void {
    if (!this.spill || this.queue.length === 0) return;
    const lines = this.take(Infinity);
    try {
      this.spill.append(lines);
      this.counters.spilled += lines.length;
    } catch (err) {
      this.counters.dropped += lines.length;
      this.log(`auditlog: ${lines.length} event(s) lost: the spill file cannot be written`, err);
    }
  }

  /** The queue is full (the event loop did not yield for that long, or the transport is away). */
  private overflow(): void {
    if (this.spill) {
      this.spillQueued();
      return;
    }
    const lost = this.queue.pop();
    if (lost !== undefined) {
      this.counters.dropped++;
      this.log("auditlog: audit event dropped: the queue is full and there is no spill file");
    }
  }

  private afterClose(text: string): void {
    this.queue.push(text);
    this.lastWrite();
  }

  private idle(): void {
    for (const resolve of this.idleWaiters.splice(0)) resolve();
    this.transport.idle?.();
  }

  private async run(): Promise<void> {
    let deadline = Infinity;
    for (;;) {
      if (this.stopping && deadline === Infinity) deadline = Date.now() + this.graceMs;
      if (this.head === null) {
        if (this.spill?.hasBacklog()) {
          this.spillQueued(); // newer than the backlog: behind it
          const chunk = this.spill.readChunk(this.maxBatch);
          if (chunk.unreadable > 0) {
            this.counters.dropped += chunk.unreadable;
            this.log(`auditlog: ${chunk.unreadable} line(s) of the spill file could not be read back`);
          }
          if (chunk.lines.length === 0) {
            this.spill.confirm(chunk.end);
            continue;
          }
          this.head = chunk.lines;
          this.headSpillEnd = chunk.end;
        } else {
          if (this.queue.length === 0) {
            if (this.stopping) break;
            this.idle();
            await this.wait();
            continue;
          }
          if (!this.stopping && this.flushing === 0 && this.queue.length < this.maxBatch && this.lingerMs > 0) {
            const until = Date.now() + this.lingerMs;
            while (!this.stopping && this.flushing === 0 && this.queue.length < this.maxBatch && Date.now() < until) {
              await this.wait(Math.max(1, until - Date.now()));
            }
          }
          this.head = this.take(this.maxBatch);
          this.headSpillEnd = null;
        }
      }
      const head = this.head;
      try {
        const signal = AbortSignal.timeout(this.publishTimeoutMs);
        await this.transport.publish(head, signal);
        this.counters.delivered += head.length;
        if (this.headSpillEnd !== null) this.spill?.confirm(this.headSpillEnd);
        this.head = null;
        this.headSpillEnd = null;
        this.backoff.reset();
        if (this.failing) {
          this.failing = false;
          this.log("auditlog: the transport is back; delivering");
        }
        continue;
      } catch (err) {
        this.counters.failedAttempts++;
        this.failing = true;
        this.log(`auditlog: batch of ${head.length} not delivered; retrying in ${this.backoff.peek()} ms`, (err as Error)?.message ?? err);
      }
      if (this.stopping && Date.now() + this.backoff.peek() > deadline) {
        this.giveUp();
        break;
      }
      // The transport is away: what arrives goes to disk at once, not to memory.
      this.spillQueued();
      const until = Date.now() + this.backoff.next();
      while (Date.now() < until) {
        await this.wait(Math.max(1, until - Date.now()));
        this.spillQueued();
        if (this.stopping && deadline === Infinity) deadline = Date.now() + this.graceMs;
      }
    }
  }

  /** close() ran out of time: keep the rest on disk for the next start, or count it lost. */
  private giveUp(): void {
    const head = this.head ?? [];
    const fromSpill = this.headSpillEnd !== null;
    this.head = null;
    this.headSpillEnd = null;
    if (this.spill) {
      if (!fromSpill) {
        this.spill.append(head);
        this.counters.spilled += head.length;
      }
      this.spillQueued();
      this.log(`auditlog: the transport is still away at close(); ${this.spill.backlogBytes()} bytes of events left in ${this.spill.dir} for the next start`);
    } else {
      const lost = (fromSpill ? 0 : head.length) + this.queue.length;
      this.queue = [];
      this.counters.dropped += lost;
      this.log(`auditlog: ${lost} event(s) lost: the transport is still away at close() and there is no spill file`);
    }
  }

  // ---- process hooks ------------------------------------------------------

  private installHooks(): void {
    for (const signal of SIGNALS) {
      const fn = () => {
        this.close().finally(() => {
          // Nobody else handles the signal: do what it would have done.
          if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
        });
      };
      process.on(signal, fn);
      this.hooks.push({ event: signal, fn });
    }
    const beforeExit = () => {
      if (!this.closing && (this.queue.length > 0 || this.head !== null || this.spill?.hasBacklog())) void this.close();
    };
    process.on("beforeExit", beforeExit);
    this.hooks.push({ event: "beforeExit", fn: beforeExit });
    const exit = () => this.lastWrite();
    process.on("exit", exit);
    this.hooks.push({ event: "exit", fn: exit });
  }

  private removeHooks(): void {
    for (const { event, fn } of this.hooks.splice(0)) process.removeListener(event, fn);
    if (this.queue.length > 0) this.lastWrite();
  }

  /** process.exit() with events still in memory: nothing async can run, so write them to the spill synchronously. */
  private lastWrite(): void {
    const lines = [...(this.head && this.headSpillEnd === null ? this.head : []), ...this.take(Infinity)];
    this.head = null;
    if (lines.length === 0) return;
    if (this.spill && !this.closed) {
      try {
        this.spill.append(lines);
        this.counters.spilled += lines.length;
        return;
      } catch {
        /* fall through */
      }
    } else if (this.closed && this.spill) {
      try {
        const again = new Spill(this.spill.dir);
        again.append(lines);
        again.close();
        this.counters.spilled += lines.length;
        return;
      } catch {
        /* fall through */
      }
    }
    this.counters.dropped += lines.length;
    console.error(`auditlog: ${lines.length} audit event(s) lost at process exit (no spill file)`);
  }
}

/**
 * Starts an emitter. `createEmitter({ url, token, source })` delivers over the
 * auditor's HTTP ingest; `createEmitter({ amqpUrl, source })` over RabbitMQ.
 *
 * ```ts
 * import { createEmitter } from "auditlog";
 * const audit = createEmitter({ url: "http://127.0.0.1:3001", token, source: "billing" });
 * audit.emit({ action: "viewed", actorType: "users", actorId: 1, targetType: "invoices", targetId: "2024-17" });
 * await audit.close();
 * ```
 */
export function createEmitter(options: EmitterOptions): Emitter {
  return new Emitter(options);
}
