"""A Flask users service, audited as the prototype's primary API was: every read
emits ``viewed``, every write ``created`` / ``changed`` (only what changed) /
``deleted``. The acting user comes from the ``X-User-Id`` header (a real service
takes it from its authentication); the request id from ``X-Request-Id``.

    pip install ./sdks/python flask
    AUDITLOG_URL=http://127.0.0.1:3001 AUDITLOG_TOKEN=… PORT=4001 python sdks/python/examples/users_service.py
"""

import os
import uuid

from flask import Flask, g, jsonify, request

from auditlog import Emitter, diff, set_request_id

audit = Emitter(
    url=os.environ.get("AUDITLOG_URL", "http://127.0.0.1:3001"),
    token=os.environ.get("AUDITLOG_TOKEN"),
    source="users-service-py",
)
app = Flask(__name__)
FIELDS = ("name", "email", "agreedTos")
users = {1: {"name": "Jim Chavo", "email": "jim@example.com", "agreedTos": False}}
next_id = [2]


@app.before_request
def bind_request_id():
    g.request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
    g.token = set_request_id(g.request_id)


def actor():
    return {"actorType": "users", "actorId": int(request.headers.get("X-User-Id", 1))}


def document(user_id, user, status=200):
    return jsonify({"data": {"type": "users", "id": str(user_id), "attributes": user}}), status


def attributes():
    given = ((request.get_json(silent=True) or {}).get("data") or {}).get("attributes") or {}
    return {k: v for k, v in given.items() if k in FIELDS}


@app.get("/api/users/<int:user_id>")
def show(user_id):
    if user_id not in users:
        return jsonify({"errors": [{"status": "404", "title": "Not found"}]}), 404
    audit.emit({**actor(), "action": "viewed", "targetType": "users", "targetId": user_id})
    return document(user_id, users[user_id])


@app.post("/api/users")
def create():
    user = {"name": "", "email": "", "agreedTos": False, **attributes()}
    user_id, next_id[0] = next_id[0], next_id[0] + 1
    users[user_id] = user
    audit.emit({**actor(), "action": "created", "targetType": "users", "targetId": user_id, "changes": diff(None, user)})
    return document(user_id, user, 201)


@app.patch("/api/users/<int:user_id>")
def update(user_id):
    if user_id not in users:
        return jsonify({"errors": [{"status": "404", "title": "Not found"}]}), 404
    before = users[user_id]
    after = {**before, **attributes()}
    users[user_id] = after
    changes = diff(before, after, personal=["email"])
    if changes:
        audit.emit({**actor(), "action": "changed", "targetType": "users", "targetId": user_id, "changes": changes})
    return document(user_id, after)


@app.delete("/api/users/<int:user_id>")
def delete(user_id):
    user = users.pop(user_id, None)
    if user is None:
        return "", 404
    audit.emit({**actor(), "action": "deleted", "targetType": "users", "targetId": user_id, "changes": diff(user, None)})
    return "", 204


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 4001)))
