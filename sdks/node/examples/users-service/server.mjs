// An Express users service, audited as the prototype's primary API was: every
// read emits `viewed`, every write `created` / `changed` (only what changed) /
// `deleted`. The acting user comes from the `X-User-Id` header (a real service
// takes it from its authentication); the request id from `X-Request-Id`.
//
//   AUDITLOG_URL=http://127.0.0.1:3001 AUDITLOG_TOKEN=… PORT=4000 node server.mjs
import { randomUUID } from "node:crypto";

import express from "express";
import { createEmitter, diff, requestIdMiddleware } from "auditlog";

const audit = createEmitter({
  url: process.env.AUDITLOG_URL ?? "http://127.0.0.1:3001",
  token: process.env.AUDITLOG_TOKEN,
  source: "users-service",
});

const users = new Map([[1, { id: 1, name: "Jim Chavo", email: "jim@example.com", agreedTos: false }]]);
let nextId = 2;
const FIELDS = ["name", "email", "agreedTos"];

const app = express();
app.use(express.json());
app.use(requestIdMiddleware(randomUUID));

const actor = (req) => ({ actorType: "users", actorId: Number(req.get("x-user-id") ?? 1) });
const pick = (user) => Object.fromEntries(FIELDS.filter((f) => user[f] !== undefined).map((f) => [f, user[f]]));

app.get("/api/users/:id", (req, res) => {
  const user = users.get(Number(req.params.id));
  if (!user) return res.status(404).json({ errors: [{ status: "404", title: "Not found" }] });
  audit.emit({ ...actor(req), action: "viewed", targetType: "users", targetId: user.id });
  res.json({ data: { type: "users", id: String(user.id), attributes: pick(user) } });
});

app.post("/api/users", (req, res) => {
  const user = { id: nextId++, name: "", email: "", agreedTos: false, ...pick(req.body?.data?.attributes ?? {}) };
  users.set(user.id, user);
  audit.emit({ ...actor(req), action: "created", targetType: "users", targetId: user.id, changes: diff(null, pick(user)) });
  res.status(201).json({ data: { type: "users", id: String(user.id), attributes: pick(user) } });
});

app.patch("/api/users/:id", (req, res) => {
  const before = users.get(Number(req.params.id));
  if (!before) return res.status(404).json({ errors: [{ status: "404", title: "Not found" }] });
  const after = { ...before, ...pick({ ...pick(before), ...(req.body?.data?.attributes ?? {}) }) };
  const changes = diff(pick(before), pick(after), { personal: ["email"] });
  users.set(after.id, after);
  if (Object.keys(changes).length > 0) {
    audit.emit({ ...actor(req), action: "changed", targetType: "users", targetId: after.id, changes });
  }
  res.json({ data: { type: "users", id: String(after.id), attributes: pick(after) } });
});

app.delete("/api/users/:id", (req, res) => {
  const user = users.get(Number(req.params.id));
  if (!user) return res.status(404).end();
  users.delete(user.id);
  audit.emit({ ...actor(req), action: "deleted", targetType: "users", targetId: user.id, changes: diff(pick(user), null) });
  res.status(204).end();
});

const port = Number(process.env.PORT ?? 4000);
app.listen(port, () => console.log(`users service on http://127.0.0.1:${port}`));
