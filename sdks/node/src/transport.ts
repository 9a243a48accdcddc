/**
 * Transports: where a numbered batch goes. {@link HttpTransport} POSTs NDJSON to
 * the auditor's ingest (`POST /api/data-events`, a service token), which answers
 * only after its store committed; {@link AmqpTransport} publishes one persistent
 * message holding a JSON array to the topic exchange (`api-stream`) with routing
 * key `<source>.data.mutated`, `mandatory`, and waits for the broker's confirm.
 * Either throws on anything short of a confirmation, and the caller retries.
 * @module
 */

import { DEFAULT_TOPOLOGY, declareAuditorTopology, type AmqpTopology, type QueueType } from "./topology.js";

/** What carries batches of event lines (compact JSON, numbered) to the auditor. */
export interface Transport {
  /** Resolves once the receiver is responsible for the batch; throws otherwise. */
  publish(lines: readonly string[], signal: AbortSignal): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
  /** Lets the process exit while nothing is being published (connections unref'd). */
  idle?(): void;
}

/** A bearer token, or a function asked for one at each batch (so that it can be renewed). */
export type TokenSource = string | (() => string | Promise<string>);

/** Logs a problem the caller cannot act on at once. */
export type Logger = (message: string, detail?: unknown) => void;

export class HttpTransport implements Transport {
  private readonly endpoint: string;
  constructor(url: string, private readonly token: TokenSource | undefined, private readonly log: Logger) {
    this.endpoint = url.replace(/\/+$/, "") + "/api/data-events";
  }

  async publish(lines: readonly string[], signal: AbortSignal): Promise<void> {
    const headers: Record<string, string> = { "content-type": "application/x-ndjson" };
    const token = typeof this.token === "function" ? await this.token() : this.token;
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await fetch(this.endpoint, { method: "POST", headers, body: lines.join("\n") + "\n", signal });
    const text = await response.text();
    if (response.ok) {
      // Events the auditor refused are our producer's bug; retrying cannot help.
      try {
        const rejected = JSON.parse(text)?.meta?.rejected;
        if (Array.isArray(rejected) && rejected.length > 0) {
          this.log(`auditlog: the auditor refused ${rejected.length} event(s) of a batch`, rejected);
        }
      } catch {
        /* a 2xx without a report: stored */
      }
      return;
    }
    if (response.status === 422) {
      // Every event was refused (as the Rust emitter does: logged, not retried).
      this.log(`auditlog: the auditor refused every event of a batch of ${lines.length}`, text);
      return;
    }
    throw new Error(`the auditor answered ${response.status}: ${text.slice(0, 500)}`);
  }

  async close(): Promise<void> {}
}

/** The user an `amqp://user:pass@host/…` URL connects as (guest when none; undefined when percent-encoded). */
export function amqpUser(url: string): string | undefined {
  const rest = url.includes("://") ? url.slice(url.indexOf("://") + 3) : url;
  const authority = rest.split(/[/?]/)[0] ?? "";
  const at = authority.lastIndexOf("@");
  const user = at >= 0 ? authority.slice(0, at).split(":")[0] : "guest";
  return user && !user.includes("%") ? user : undefined;
}


export class AmqpTransport implements Transport {
  private connection: any = null;
  private channel: any = null;
  private opening: Promise<void> | null = null;
  private readonly returned = new Set<string>();
  private readonly routingKey: string;
  private readonly userId: string | undefined;
  private serial = 0;

  private readonly topology: AmqpTopology;
  private readonly exchange: string;

  /** `topology` names the exchange (a string: the exchange alone) and the auditor's queue, binding, dead-letter queue and queue type (defaults: {@link DEFAULT_TOPOLOGY}). */
  constructor(private readonly url: string, topology: string | Partial<AmqpTopology>, source: string, private readonly log: Logger) {
    this.topology = { ...DEFAULT_TOPOLOGY, ...definedOnly(typeof topology === "string" ? { exchange: topology } : topology) };
    if (this.topology.queueType !== "quorum" && this.topology.queueType !== "classic") {
      throw new TypeError(`auditlog: queueType is "quorum" or "classic", not ${JSON.stringify(this.topology.queueType)}`);
    }
    this.exchange = this.topology.exchange;
    this.routingKey = `${source}.data.mutated`;
    this.userId = amqpUser(url);
  }

  private async open(): Promise<void> {
    let amqp: any;
    try {
      amqp = await import("amqplib");
    } catch {
      throw new Error("the RabbitMQ transport needs the `amqplib` package: npm install amqplib");
    }
    const connect = amqp.connect ?? amqp.default?.connect;
    const connection = await connect(this.url, { clientProperties: { connection_name: "auditlog node producer" } });
    connection.on("error", (err: Error) => this.log("auditlog: RabbitMQ connection error", err.message));
    connection.on("close", () => {
      if (this.connection === connection) this.connection = this.channel = null;
    });
    try {
      // The exchange, and the auditor's queue and binding, as the Rust publisher declares them.
      await declareAuditorTopology(connection, this.topology);
      const channel = await connection.createConfirmChannel();
      channel.on("error", (err: Error) => this.log("auditlog: RabbitMQ channel error", err.message));
      channel.on("close", () => {
        if (this.channel === channel) this.channel = null;
      });
      channel.on("return", (message: any) => {
        const id = message?.properties?.messageId;
        if (id) this.returned.add(id);
      });
      this.connection = connection;
      this.channel = channel;
    } catch (err) {
      await connection.close().catch(() => {});
      throw err;
    }
  }

  private socket(): any {
    return this.connection?.connection?.stream;
  }

  async publish(lines: readonly string[], signal: AbortSignal): Promise<void> {
    if (!this.channel) {
      this.opening ??= this.open().finally(() => (this.opening = null));
      await this.opening;
    }
    this.socket()?.ref?.();
    const channel = this.channel;
    if (!channel) throw new Error("no RabbitMQ channel");
    const messageId = `${process.pid}-${++this.serial}`;
    const body = Buffer.from("[" + lines.join(",") + "]");
    const options: Record<string, unknown> = {
      persistent: true,
      contentType: "application/json",
      mandatory: true,
      messageId,
    };
    // RabbitMQ checks user-id against the connection's user: the auditor records who published.
    if (this.userId) options.userId = this.userId;
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(new Error("no confirmation in time"));
        signal.addEventListener("abort", onAbort, { once: true });
        try {
          channel.publish(this.exchange, this.routingKey, body, options, (err: unknown) => {
            signal.removeEventListener("abort", onAbort);
            if (err) reject(new Error("RabbitMQ did not accept the batch (nack)"));
            else if (this.returned.delete(messageId)) {
              reject(new Error(`RabbitMQ could not route the batch (routing key ${this.routingKey} on ${this.exchange}): is the auditor's queue bound?`));
            } else resolve();
          });
        } catch (err) {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        }
      });
    } catch (err) {
      // Start over with a fresh connection next time.
      const connection = this.connection;
      this.connection = this.channel = null;
      connection?.close().catch(() => {});
      throw err;
    }
  }

  idle(): void {
    this.socket()?.unref?.();
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = this.channel = null;
    if (connection) await connection.close().catch(() => {});
  }
}

/** Options naming a transport: `url` (+ `token`) for HTTP ingest, or `amqpUrl` (+ `exchange`) for RabbitMQ. */
export interface TransportOptions {
  /** The auditor's base URL, e.g. `http://127.0.0.1:3001`: HTTP ingest. */
  url?: string;
  /** Service (or admin) token for HTTP ingest. */
  token?: TokenSource;
  /** RabbitMQ URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`. */
  amqpUrl?: string;
  /** Topic exchange (default `api-stream`). */
  exchange?: string;
  /** The auditor's queue, declared (with its binding) when missing so that nothing published before the auditor's first start is lost (default `data-mutation-audits`). */
  queue?: string;
  /** Binding of the auditor's queue to the exchange (default `*.data.mutated`). */
  bindingKey?: string;
  /** The auditor's dead-letter queue (default `data-mutation-audits.dead-letter`). */
  deadLetterQueue?: string;
  /** Type of the queues when they do not exist yet: `quorum` (default) or `classic`. An existing queue is used as it was declared. */
  queueType?: QueueType;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function makeTransport(options: TransportOptions, source: string, log: Logger): Transport {
  if (options.url && options.amqpUrl) throw new TypeError("auditlog: give either `url` (HTTP ingest) or `amqpUrl` (RabbitMQ), not both");
  if (options.url) return new HttpTransport(options.url, options.token, log);
  if (options.amqpUrl) {
    const { exchange, queue, bindingKey, deadLetterQueue, queueType } = options;
    return new AmqpTransport(options.amqpUrl, { exchange, queue, bindingKey, deadLetterQueue, queueType }, source, log);
  }
  throw new TypeError("auditlog: give `url` (and `token`) for HTTP ingest or `amqpUrl` for RabbitMQ");
}

/** The retry pace: 50 ms doubling up to 5 s, as the Rust emitter's Backoff. */
export class Backoff {
  static readonly FIRST = 50;
  static readonly MAX = 5000;
  private pause = Backoff.FIRST;
  next(): number {
    const p = this.pause;
    this.pause = Math.min(this.pause * 2, Backoff.MAX);
    return p;
  }
  peek(): number {
    return this.pause;
  }
  reset(): void {
    this.pause = Backoff.FIRST;
  }
}
