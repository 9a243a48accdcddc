"""The shared validation vectors, and the helpers that need no services."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from auditlog import AuditValidationError, Emitter, check, diff, request_id, uuid7
from conftest import REPO


def expand(value):
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["$repeat"]:
            return value["$repeat"][0] * value["$repeat"][1]
        return {k: expand(v) for k, v in value.items()}
    return value


def test_every_shared_vector_gets_its_recorded_verdict_and_field():
    doc = json.loads((REPO / "sdks/vectors/events.json").read_text(encoding="utf-8"))
    failures = []
    for case in doc["vectors"]:
        valid, field = check(expand(case["event"]))
        if valid != case["valid"] or (not valid and field != case["field"]):
            failures.append(f"{case['name']}: expected {case['valid']}/{case['field']}, got {valid}/{field}")
    assert len(doc["vectors"]) > 50
    assert failures == []


def test_diff_keeps_only_changed_fields_and_masks_personal_ones():
    before = {"name": "Ann", "agreedTos": False, "tags": ["a"], "email": "a@x.io", "n": 1}
    after = {"name": "Ann", "agreedTos": True, "tags": ["a"], "email": "b@x.io", "n": True}
    assert diff(before, after, personal=["email"]) == {
        "agreedTos": {"prev": False, "next": True},
        "email": {"prev": None, "next": None, "masked": True},
        "n": {"prev": 1, "next": True},
    }
    assert diff(before, after, fields=["name", "tags"]) == {}
    assert diff(None, {"name": "Ann"}) == {"name": {"prev": None, "next": "Ann"}}
    assert diff({"name": "Ann"}, None) == {"name": {"prev": "Ann", "next": None}}


def test_uuid7_carries_the_time_and_the_version():
    i = uuid7(1_764_300_000_000)
    assert i[14] == "7" and i[19] in "89ab"
    assert int(i.replace("-", "")[:12], 16) == 1_764_300_000_000
    assert uuid7() != uuid7()


class Kept:
    def __init__(self):
        self.lines = []

    def publish(self, lines, timeout):
        self.lines.extend(lines)

    def close(self):
        pass


def test_emit_raises_naming_the_field_and_fills_id_timestamp_source_and_request_id():
    kept = Kept()
    audit = Emitter(source="unit", transport=kept, spill_dir=False, handle_signals=False, linger=0)
    with pytest.raises(AuditValidationError) as err:
        audit.emit({"action": "exploded", "actorType": "users", "actorId": 1, "targetType": "users", "targetId": 2})
    assert err.value.field == "action"
    with pytest.raises(AuditValidationError) as err:
        audit.emit({"action": "viewed", "actorType": "users", "actorId": 1, "targetType": "users", "targetId": 2, "producerSeq": 3})
    assert err.value.field == "producerSeq"
    with request_id("req-7"):
        event_id = audit.emit({"action": "viewed", "actorType": "users", "actorId": 1, "targetType": "users", "targetId": 2})
    audit.close()
    assert len(kept.lines) == 1
    event = json.loads(kept.lines[0])
    assert event["id"] == event_id
    assert (event["source"], event["requestId"], event["producerSeq"]) == ("unit", "req-7", 1)
    assert event["producerId"] == audit.producer_id
    assert abs(event["timestamp"] - time.time() * 1000) < 5000


def test_emit_carries_tenant_id_as_given_leaves_it_out_when_absent_and_refuses_an_invalid_one():
    kept = Kept()
    audit = Emitter(source="unit", transport=kept, spill_dir=False, handle_signals=False, linger=0)
    event = {"action": "viewed", "actorType": "users", "actorId": 1, "targetType": "users", "targetId": 2}
    for bad in ["", "acme eu", "acme/eu", "acm\u00e9", "t" * 65, 7, "acme\n"]:
        with pytest.raises(AuditValidationError) as err:
            audit.emit({**event, "tenantId": bad})
        assert err.value.field == "tenantId", bad
    audit.emit({**event, "tenantId": "acme-1.eu_west"})
    audit.emit(event)
    audit.close()
    assert len(kept.lines) == 2
    assert json.loads(kept.lines[0])["tenantId"] == "acme-1.eu_west"
    assert "tenantId" not in json.loads(kept.lines[1])
    assert audit.stats.emitted == 2
