/**
 * The DataEvent wire contract and its validation: the same rules as the Rust
 * crate `auditlog-event`, checked against the shared vectors in
 * `sdks/vectors/events.json`.
 * @module
 */

/** What was done to the target. */
export type Action = "viewed" | "created" | "changed" | "deleted";

/** One field's change. A masked change records that the field changed, never its value. */
export interface Change {
  prev: unknown;
  next: unknown;
  masked?: boolean;
}

/** Field name → change. */
export type Changes = Record<string, Change>;

/** An audit event as the application emits it. `id`, `timestamp`, `source` and `requestId` are filled in when absent. */
export interface DataEvent {
  /** UUID (a UUIDv7 is assigned when absent): the idempotency key. */
  id?: string;
  action: Action;
  /** Milliseconds since the Unix epoch; now when absent. */
  timestamp?: number;
  actorType: string;
  actorId: string | number;
  targetType: string;
  targetId: string | number;
  /** Required and non-empty for `changed`; optional on `created`/`deleted`; not allowed on `viewed`. */
  changes?: Changes | null;
  /** Canonical name such as `user.tos_accepted`, at most 128 characters. */
  eventName?: string | null;
  /** The emitting service; the emitter's `source` when absent. */
  source?: string | null;
  /** Correlation id; taken from {@link withRequestId}'s context when absent. */
  requestId?: string | null;
  /** Free metadata (ip, user agent…). */
  meta?: Record<string, unknown> | null;
  /**
   * The tenant (a customer of the deployment) the event belongs to: 1 to 64
   * ASCII letters, digits, `.`, `_` or `-`. Without one it belongs to the
   * default tenant, `default`, unless it is delivered over HTTP with a token
   * bound to a tenant, which gives it that tenant; such a token may deliver
   * only its tenant's events.
   */
  tenantId?: string | null;
}

/** Largest event, in bytes of its compact JSON text. */
export const MAX_EVENT_BYTES = 64_000;
/** Longest object type, in characters. */
export const MAX_TYPE_CHARS = 64;
/** Longest object id, in characters. */
export const MAX_ID_CHARS = 128;
/** Longest eventName, source, requestId or producerId, in characters. */
export const MAX_LABEL_CHARS = 128;
/** Longest tenantId, in characters. */
export const MAX_TENANT_CHARS = 64;
/** The tenant of an event that names none, as the auditor stores it when the delivering token is bound to no tenant. */
export const DEFAULT_TENANT = "default";

const FIELDS = new Set([
  "id", "action", "timestamp", "actorType", "actorId", "targetType", "targetId", "changes",
  "eventName", "source", "requestId", "meta", "producerId", "producerSeq", "ingestedBy", "via", "tenantId",
]);
const ACTIONS = new Set(["viewed", "created", "changed", "deleted"]);
const UUID_HYPHENATED = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const UUID_SIMPLE = /^[0-9a-fA-F]{32}$/;
const TENANT_CHARS = /^[A-Za-z0-9._-]*$/;

/** Why an event was refused: `field` names the wire field at fault (null when the whole event is). */
export class AuditValidationError extends Error {
  readonly field: string | null;
  constructor(field: string | null, reason: string) {
    super(field === null ? reason : `\`${field}\` ${reason}`);
    this.name = "AuditValidationError";
    this.field = field;
  }
}

/** Characters (Unicode scalar values) in a string, as the Rust side counts them. */
export function charCount(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { n--; i++; }
    }
  }
  return n;
}

function isUuid(text: string): boolean {
  if (text.length === 36) return UUID_HYPHENATED.test(text);
  if (text.length === 32) return UUID_SIMPLE.test(text);
  if (text.length === 38 && text[0] === "{" && text[37] === "}") return UUID_HYPHENATED.test(text.slice(1, 37));
  if (text.length === 45 && text.startsWith("urn:uuid:")) return UUID_HYPHENATED.test(text.slice(9));
  return false;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function objectType(field: string, value: unknown): void {
  if (value === undefined || value === null) throw new AuditValidationError(field, "is required");
  if (typeof value !== "string") throw new AuditValidationError(field, "must be a string");
  const n = charCount(value);
  if (n === 0) throw new AuditValidationError(field, "must not be empty");
  if (n > MAX_TYPE_CHARS) throw new AuditValidationError(field, "must be at most 64 characters");
}

function objectId(field: string, value: unknown): void {
  if (value === undefined || value === null) throw new AuditValidationError(field, "is required");
  if (typeof value === "string") {
    const n = charCount(value);
    if (n === 0) throw new AuditValidationError(field, "must not be empty");
    if (n > MAX_ID_CHARS) throw new AuditValidationError(field, "must be at most 128 characters");
    return;
  }
  if (typeof value === "number" && Number.isSafeInteger(value)) return;
  throw new AuditValidationError(field, "must be a string or an integer");
}

function label(field: string, value: unknown): void {
  if (value === undefined || value === null) return;
  if (typeof value !== "string") throw new AuditValidationError(field, "must be a string");
  if (charCount(value) > MAX_LABEL_CHARS) throw new AuditValidationError(field, "must be at most 128 characters");
}

/** Checks a tenant id as the auditor's `parse_tenant` does, naming `field` when it is not one. */
function tenant(field: string, value: unknown): void {
  if (value === undefined || value === null) return;
  if (typeof value !== "string") throw new AuditValidationError(field, "must be a string");
  // Only ASCII is allowed, so UTF-16 units, bytes and characters agree once the characters are checked.
  if (!TENANT_CHARS.test(value)) throw new AuditValidationError(field, "may hold only letters, digits, `.`, `_` and `-`");
  if (value.length === 0 || value.length > MAX_TENANT_CHARS) throw new AuditValidationError(field, "must be 1 to 64 characters");
}

function checkChanges(value: unknown): number {
  if (!isObject(value)) throw new AuditValidationError("changes", "must be an object of field → {prev, next}");
  let count = 0;
  for (const field in value) {
    count++;
    const change = value[field];
    if (!isObject(change)) throw new AuditValidationError("changes", `\`${field}\` must be an object {prev, next}`);
    let masked = false;
    for (const key in change) {
      if (key !== "prev" && key !== "next" && key !== "masked") {
        throw new AuditValidationError("changes", `\`${field}\` may have only \`prev\`, \`next\` and \`masked\``);
      }
    }
    if ("masked" in change) {
      if (typeof change.masked !== "boolean") throw new AuditValidationError("changes", `\`${field}\`.masked must be true or false`);
      masked = change.masked;
    }
    if (masked) {
      const carries = (v: unknown) => v !== undefined && v !== null;
      if (carries(change.prev) || carries(change.next)) {
        throw new AuditValidationError("changes", `\`${field}\` is masked, so \`prev\` and \`next\` must be null`);
      }
    } else if (!("prev" in change) || !("next" in change) || change.prev === undefined || change.next === undefined) {
      throw new AuditValidationError("changes", `\`${field}\` must have both \`prev\` and \`next\``);
    }
  }
  return count;
}

/**
 * Checks a whole wire event (as it would be sent, producer fields included)
 * against the contract and throws {@link AuditValidationError} naming the first
 * field at fault, in the order the auditor checks them. Returns the event's
 * compact JSON text, whose size it checked.
 */
export function validate(event: unknown): string {
  if (!isObject(event)) throw new AuditValidationError(null, "an event must be a JSON object");
  for (const key in event) {
    if (!FIELDS.has(key)) throw new AuditValidationError(key, "is not a data-event field");
  }
  for (const field of ["ingestedBy", "via"]) {
    if (event[field] !== undefined) {
      throw new AuditValidationError(field, "is recorded by the auditor when it receives the event; leave it out");
    }
  }
  const e = event;
  if (e.id !== undefined && e.id !== null) {
    if (typeof e.id !== "string") throw new AuditValidationError("id", "must be a UUID string");
    if (!isUuid(e.id)) throw new AuditValidationError("id", "must be a UUID");
  }
  if (e.action === undefined || e.action === null) throw new AuditValidationError("action", "is required");
  if (typeof e.action !== "string") throw new AuditValidationError("action", "must be a string");
  if (!ACTIONS.has(e.action)) {
    throw new AuditValidationError("action", `\`${e.action}\` is not one of viewed, created, changed, deleted`);
  }
  if (e.timestamp !== undefined && e.timestamp !== null) {
    if (typeof e.timestamp !== "number") {
      throw new AuditValidationError("timestamp", "must be an integer of milliseconds since the Unix epoch");
    }
    if (!Number.isSafeInteger(e.timestamp) || e.timestamp < 0) {
      throw new AuditValidationError("timestamp", "must be a non-negative integer of milliseconds");
    }
  }
  objectType("actorType", e.actorType);
  objectId("actorId", e.actorId);
  objectType("targetType", e.targetType);
  objectId("targetId", e.targetId);
  const hasChanges = e.changes !== undefined && e.changes !== null;
  const changeCount = hasChanges ? checkChanges(e.changes) : 0;
  if (e.action === "changed" && !hasChanges) throw new AuditValidationError("changes", "is required for a `changed` event");
  if (e.action === "changed" && changeCount === 0) {
    throw new AuditValidationError("changes", "must name at least one field for a `changed` event");
  }
  if (e.action === "viewed" && hasChanges) throw new AuditValidationError("changes", "is not allowed on a `viewed` event");
  label("producerId", e.producerId);
  const hasSeq = e.producerSeq !== undefined && e.producerSeq !== null;
  if (hasSeq && !(typeof e.producerSeq === "number" && Number.isSafeInteger(e.producerSeq) && e.producerSeq > 0)) {
    throw new AuditValidationError("producerSeq", "must be a positive integer");
  }
  const hasProducer = e.producerId !== undefined && e.producerId !== null;
  if (hasProducer !== hasSeq) {
    throw new AuditValidationError(hasProducer ? "producerSeq" : "producerId", "producerId and producerSeq go together");
  }
  if (e.meta !== undefined && e.meta !== null && !isObject(e.meta)) throw new AuditValidationError("meta", "must be an object");
  label("eventName", e.eventName);
  label("source", e.source);
  label("requestId", e.requestId);
  tenant("tenantId", e.tenantId);
  const text = JSON.stringify(event);
  // Bytes of UTF-8: only worth counting when the UTF-16 length is near the limit.
  if (text.length * 3 > MAX_EVENT_BYTES && Buffer.byteLength(text, "utf8") > MAX_EVENT_BYTES) {
    throw new AuditValidationError(null, `the event is ${Buffer.byteLength(text, "utf8")} bytes; at most ${MAX_EVENT_BYTES} are accepted`);
  }
  return text;
}

/** Whether `event` satisfies the contract, and if not, the field at fault. */
export function check(event: unknown): { valid: true } | { valid: false; field: string | null; message: string } {
  try {
    validate(event);
    return { valid: true };
  } catch (err) {
    if (err instanceof AuditValidationError) return { valid: false, field: err.field, message: err.message };
    throw err;
  }
}
