/**
 * `diff(before, after)`: the `changes` of a `changed` event, with only the fields
 * whose values really differ (deep equality, as the Rust data layer compares JSON
 * values), and personal or secret fields recorded as masked.
 * @module
 */
import type { Changes } from "./event.js";

/** Options of {@link diff}. */
export interface DiffOptions {
  /** The fields compared (default: every key of `before` and `after`). */
  fields?: readonly string[];
  /** Fields recorded masked: the log says they changed, never their values. */
  personal?: readonly string[];
}

/** Deep equality of JSON values (key order does not matter). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined) a = null;
  if (b === undefined) b = null;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") {
    return a === b || (a instanceof Date && b instanceof Date && a.getTime() === b.getTime());
  }
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((v, i) => jsonEqual(v, bb[i]));
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ao), ...Object.keys(bo)].filter((k) => ao[k] !== undefined || bo[k] !== undefined));
  for (const k of keys) if (!jsonEqual(ao[k], bo[k])) return false;
  return true;
}

function plain(value: unknown): unknown {
  return value === undefined ? null : value instanceof Date ? value.toISOString() : value;
}

/**
 * The changes from `before` to `after`: `{field: {prev, next}}` for each field
 * whose value differs, `{prev: null, next: null, masked: true}` for a personal
 * one. A missing object (`null`) is a creation or deletion: every field changes.
 * An empty result means nothing changed: emit no `changed` event.
 */
export function diff(
  before: Record<string, unknown> | null | undefined,
  after: Record<string, unknown> | null | undefined,
  options: DiffOptions = {},
): Changes {
  const b = before ?? {};
  const a = after ?? {};
  const fields = options.fields ?? [...new Set([...Object.keys(b), ...Object.keys(a)])];
  const personal = new Set(options.personal ?? []);
  const changes: Changes = {};
  for (const field of fields) {
    const prev = before ? b[field] : undefined;
    const next = after ? a[field] : undefined;
    if (before && after && jsonEqual(prev, next)) continue;
    changes[field] = personal.has(field)
      ? { prev: null, next: null, masked: true }
      : { prev: plain(prev), next: plain(next) };
  }
  return changes;
}
