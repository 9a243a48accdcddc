/**
 * auditlog's producer SDK for Node.js: `createEmitter` for events (HTTP ingest or
 * RabbitMQ), `diff` for the changes of a `changed` event, `createOutbox` for
 * mutations staged in the application's own database transaction.
 * @module
 */
export { createEmitter, Emitter, type EmitterOptions, type EmitterStats } from "./emitter.js";
export {
  AuditValidationError,
  check,
  validate,
  charCount,
  DEFAULT_TENANT,
  MAX_EVENT_BYTES,
  MAX_ID_CHARS,
  MAX_LABEL_CHARS,
  MAX_TENANT_CHARS,
  MAX_TYPE_CHARS,
  type Action,
  type Change,
  type Changes,
  type DataEvent,
} from "./event.js";
export { diff, jsonEqual, type DiffOptions } from "./diff.js";
export { uuidv7 } from "./ids.js";
export { withRequestId, currentRequestId, requestIdMiddleware } from "./context.js";
export { HttpTransport, AmqpTransport, type Transport, type TransportOptions, type TokenSource } from "./transport.js";
export { DEFAULT_TOPOLOGY, DELIVERY_LIMIT, type AmqpTopology, type QueueType } from "./topology.js";
export { createOutbox, Outbox, OutboxRelay, type OutboxOptions, type RelayOptions, type Dialect } from "./outbox.js";
