/**
 * The auditor's RabbitMQ topology, declared by the producer exactly as the Rust
 * publisher declares it (`crates/auditlog-amqp/src/topology.rs`): the topic
 * exchange, the dead-letter queue, the auditor's queue and its binding. Events
 * published before any auditor ever ran then wait in the queue instead of coming
 * back unroutable.
 *
 * Each object is first probed with a passive declare on a channel of its own
 * (RabbitMQ closes the channel when the object is missing): an existing exchange
 * or queue is adopted as it was declared, whatever its durability, type or
 * arguments (the prototype declared them non-durable; changing a queue's type
 * means moving its messages, which is the operator's call). A missing exchange is
 * declared durable; a missing queue durable, of the configured type: a quorum
 * queue by default, the auditor's with a delivery limit of 20 after which the
 * broker dead-letters a message to the dead-letter queue.
 * @module
 */

/** The type of the queues declared when they do not exist yet (an existing queue keeps its type). */
export type QueueType = "quorum" | "classic";

/** Where the auditor reads: the names and queue type the Rust publisher and `auditlog auditor` use by default. */
export interface AmqpTopology {
  /** Topic exchange (default `api-stream`). */
  exchange: string;
  /** The auditor's queue (default `data-mutation-audits`). */
  queue: string;
  /** Binding of the queue to the exchange (default `*.data.mutated`). */
  bindingKey: string;
  /** Where the broker dead-letters what the queue gives up on (default `data-mutation-audits.dead-letter`). */
  deadLetterQueue: string;
  /** Type of a queue declared here (default `quorum`). */
  queueType: QueueType;
}

/** Deliveries of one message a quorum queue allows before dead-lettering it (the Rust `DELIVERY_LIMIT`). */
export const DELIVERY_LIMIT = 20;

export const DEFAULT_TOPOLOGY: Readonly<AmqpTopology> = Object.freeze({
  exchange: "api-stream",
  queue: "data-mutation-audits",
  bindingKey: "*.data.mutated",
  deadLetterQueue: "data-mutation-audits.dead-letter",
  queueType: "quorum",
});

/** The arguments a new queue is declared with; `deadLetters` for the auditor's queue, none for the dead-letter queue. */
export function queueArguments(queueType: QueueType, deadLetters?: string): Record<string, unknown> {
  if (queueType !== "quorum") return {};
  const args: Record<string, unknown> = { "x-queue-type": "quorum" };
  if (deadLetters !== undefined) {
    // A 64-bit integer, as the Rust publisher sends it.
    args["x-delivery-limit"] = { "!": "long", value: DELIVERY_LIMIT };
    // The default exchange routes by queue name.
    args["x-dead-letter-exchange"] = "";
    args["x-dead-letter-routing-key"] = deadLetters;
  }
  return args;
}

/** Runs `fn` on a fresh channel of `connection`, closing it afterwards; rejects if the broker closes it. */
async function onChannel<T>(connection: any, fn: (channel: any) => Promise<T>): Promise<T> {
  const channel = await connection.createChannel();
  // A failed passive declare closes the channel with an error event; the rejected call reports it.
  channel.on("error", () => {});
  const result = await fn(channel);
  await channel.close().catch(() => {});
  return result;
}

async function exists(connection: any, check: (channel: any) => Promise<unknown>): Promise<boolean> {
  try {
    await onChannel(connection, check);
    return true;
  } catch {
    return false;
  }
}

/** Makes sure the exchange exists, adopting an existing one. */
export async function declareExchange(connection: any, name: string): Promise<void> {
  if (await exists(connection, (c) => c.checkExchange(name))) return;
  await onChannel(connection, (c) => c.assertExchange(name, "topic", { durable: true }));
}

/** Makes sure the queue exists: an existing one is adopted, a missing one declared durable with `args`. */
export async function declareQueue(connection: any, name: string, args: Record<string, unknown>): Promise<void> {
  if (await exists(connection, (c) => c.checkQueue(name))) return;
  try {
    await onChannel(connection, (c) => c.assertQueue(name, { durable: true, arguments: args }));
  } catch (err) {
    // Another process declared it in between, perhaps otherwise (PRECONDITION_FAILED): adopt theirs.
    if (await exists(connection, (c) => c.checkQueue(name))) return;
    throw err;
  }
}

/** The auditor's whole topology: exchange, dead-letter queue (first, so that the queue can dead-letter from its first message), queue, binding. */
export async function declareAuditorTopology(connection: any, t: AmqpTopology): Promise<void> {
  await declareExchange(connection, t.exchange);
  await declareQueue(connection, t.deadLetterQueue, queueArguments(t.queueType));
  await declareQueue(connection, t.queue, queueArguments(t.queueType, t.deadLetterQueue));
  await onChannel(connection, (c) => c.bindQueue(t.queue, t.exchange, t.bindingKey));
}
