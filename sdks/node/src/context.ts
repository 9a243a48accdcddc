/**
 * The request id of the code running now, carried by AsyncLocalStorage: wrap each
 * request's handling in {@link withRequestId} and every event emitted inside it
 * carries that `requestId`.
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";

const storage = new AsyncLocalStorage<string>();

/** Runs `fn` with `requestId` as the request id of every event it (and what it awaits) emits. */
export function withRequestId<T>(requestId: string, fn: () => T): T {
  return storage.run(requestId, fn);
}

/** The request id of the current context, if any. */
export function currentRequestId(): string | undefined {
  return storage.getStore();
}

/** Express/Connect middleware: takes `X-Request-Id` (or makes one) and runs the rest of the request under it. */
export function requestIdMiddleware(make: () => string) {
  return (req: { headers: Record<string, unknown> }, res: { setHeader(n: string, v: string): void }, next: () => void) => {
    const given = req.headers["x-request-id"];
    const id = typeof given === "string" && given.length > 0 && given.length <= 128 ? given : make();
    res.setHeader("X-Request-Id", id);
    storage.run(id, next);
  };
}
