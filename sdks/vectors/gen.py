# Writes events.json: the shared validation vectors (run once by hand; the JSON is
# what the three suites read). Kept beside it so the vectors can be regenerated.
import json

base = {"action": "changed", "actorType": "users", "actorId": 1,
        "targetType": "users", "targetId": "42",
        "changes": {"agreedTos": {"prev": 0, "next": 1}},
        "timestamp": 1600000000000}
vectors = []

def case(name, valid, field=None, drop=(), raw=None, **over):
    if raw is not None:
        event = raw
    else:
        event = dict(base)
        for k in drop:
            event.pop(k, None)
        event.update(over)
    vectors.append({"name": name, "event": event, "valid": valid, "field": field})

def rep(s, n):
    return {"$repeat": [s, n]}

case("the seed's changed event", True)
case("an id given as a UUIDv7", True, id="0190b0a0-0000-7000-8000-000000000001")
case("an id in upper case", True, id="0190B0A0-0000-7000-8000-00000000000A")
case("an id without hyphens", True, id="0190b0a0000070008000000000000001")
case("an id in braces", True, id="{0190b0a0-0000-7000-8000-000000000001}")
case("an id as a URN", True, id="urn:uuid:0190b0a0-0000-7000-8000-000000000001")
case("a null id is filled in", True, id=None)
case("an id that is not a UUID", False, "id", id="not-a-uuid")
case("an id with a non-hex digit", False, "id", id="0190b0a0-0000-7000-8000-00000000000g")
case("an id as a number", False, "id", id=12)
case("every action: viewed", True, action="viewed", drop=("changes",))
case("every action: created", True, action="created")
case("every action: deleted", True, action="deleted")
case("created without changes", True, action="created", drop=("changes",))
case("deleted with empty changes", True, action="deleted", changes={})
case("an unknown action", False, "action", action="exploded")
case("an action in capitals", False, "action", action="Viewed")
case("a missing action", False, "action", drop=("action",))
case("a null action", False, "action", action=None)
case("an action that is not a string", False, "action", action=1)
case("a missing timestamp is filled in", True, drop=("timestamp",))
case("a timestamp of zero", True, timestamp=0)
case("a negative timestamp", False, "timestamp", timestamp=-1)
case("a fractional timestamp", False, "timestamp", timestamp=1.5)
case("a timestamp as a string", False, "timestamp", timestamp="1600000000000")
for f in ["actorType", "actorId", "targetType", "targetId"]:
    case(f"a missing {f}", False, f, drop=(f,))
    case(f"a null {f}", False, f, **{f: None})
for f in ["actorType", "targetType"]:
    case(f"an empty {f}", False, f, **{f: ""})
    case(f"a {f} of 64 characters", True, **{f: rep("t", 64)})
    case(f"a {f} of 65 characters", False, f, **{f: rep("t", 65)})
    case(f"a {f} of 64 emoji (characters, not UTF-16 units)", True, **{f: rep("\U0001F600", 64)})
    case(f"a {f} of 65 emoji", False, f, **{f: rep("\U0001F600", 65)})
    case(f"a numeric {f}", False, f, **{f: 5})
for f in ["actorId", "targetId"]:
    case(f"an integer {f}", True, **{f: 7})
    case(f"a negative integer {f}", True, **{f: -7})
    case(f"a {f} of 128 characters", True, **{f: rep("x", 128)})
    case(f"a {f} of 129 characters", False, f, **{f: rep("x", 129)})
    case(f"a {f} of 128 non-ASCII characters", True, **{f: rep("\u00e9", 128)})
    case(f"an empty {f}", False, f, **{f: ""})
    case(f"a fractional {f}", False, f, **{f: 1.5})
    case(f"a boolean {f}", False, f, **{f: True})
    case(f"an object {f}", False, f, **{f: {"a": 1}})
    case(f"an array {f}", False, f, **{f: [1]})
case("changed without changes", False, "changes", drop=("changes",))
case("changed with null changes", False, "changes", changes=None)
case("changed with empty changes", False, "changes", changes={})
case("viewed with changes", False, "changes", action="viewed")
case("viewed with null changes", True, action="viewed", changes=None)
case("changes that are not an object", False, "changes", changes=[1])
case("a change that is not an object", False, "changes", changes={"a": 1})
case("a change without next", False, "changes", changes={"a": {"prev": 1}})
case("a change without prev", False, "changes", changes={"a": {"next": 1}})
case("a change with null values", True, changes={"a": {"prev": None, "next": None}})
case("a change with an extra key", False, "changes", changes={"a": {"prev": 1, "next": 2, "old": 0}})
case("a change with nested values", True, changes={"a": {"prev": {"x": [1, 2]}, "next": {"x": [3]}}})
case("a masked change", True, changes={"password": {"prev": None, "next": None, "masked": True}})
case("a masked change without values", True, changes={"password": {"masked": True}})
case("a masked change carrying a value", False, "changes", changes={"password": {"prev": None, "next": "secret", "masked": True}})
case("masked false is an ordinary change", True, changes={"a": {"prev": 1, "next": 2, "masked": False}})
case("masked as a string", False, "changes", changes={"a": {"prev": 1, "next": 2, "masked": "yes"}})
for f in ["eventName", "source", "requestId"]:
    case(f"a {f}", True, **{f: "user.tos_accepted"})
    case(f"a null {f}", True, **{f: None})
    case(f"a {f} of 128 characters", True, **{f: rep("r", 128)})
    case(f"a {f} of 129 characters", False, f, **{f: rep("r", 129)})
    case(f"a {f} that is not a string", False, f, **{f: 12})
case("meta as an object", True, meta={"ip": "127.0.0.1", "ua": "curl"})
case("null meta", True, meta=None)
case("meta as a string", False, "meta", meta="ip=1")
case("meta as an array", False, "meta", meta=[])
case("a producer id with its number", True, producerId="billing/1", producerSeq=3)
case("a producer number without its id", False, "producerId", producerSeq=3)
case("a producer id without its number", False, "producerSeq", producerId="billing/1")
case("a producer number of zero", False, "producerSeq", producerId="billing/1", producerSeq=0)
case("a negative producer number", False, "producerSeq", producerId="billing/1", producerSeq=-1)
case("a fractional producer number", False, "producerSeq", producerId="billing/1", producerSeq=1.5)
case("a producer number as a string", False, "producerSeq", producerId="billing/1", producerSeq="3")
case("a producer id of 129 characters", False, "producerId", producerId=rep("p", 129), producerSeq=1)
case("a tenantId", True, tenantId="acme-1.eu_west")
case("a null tenantId (the default tenant)", True, tenantId=None)
case("a tenantId of 64 characters", True, tenantId=rep("t", 64))
case("an empty tenantId", False, "tenantId", tenantId="")
case("a tenantId of 65 characters", False, "tenantId", tenantId=rep("t", 65))
case("a tenantId with a space", False, "tenantId", tenantId="acme eu")
case("a tenantId with a slash", False, "tenantId", tenantId="acme/eu")
case("a tenantId with a non-ASCII letter", False, "tenantId", tenantId="acm\u00e9")
case("a tenantId as a number", False, "tenantId", tenantId=7)
case("a tenantId as a boolean", False, "tenantId", tenantId=True)
case("a tenantId as an object", False, "tenantId", tenantId={"id": "acme"})
case("a producer saying who delivered it", False, "ingestedBy", ingestedBy="services/api")
case("a producer saying how it was delivered", False, "via", via="http")
case("an unknown field", False, "colour", colour="red")
case("an unknown field in snake case", False, "actor_type", actor_type="users")
case("an array instead of an object", False, None, raw=[dict(base)])
case("a string instead of an object", False, None, raw="event")
case("a large event under the limit", True, meta={"blob": rep("a", 60000)})
case("an event over 64 000 bytes", False, None, meta={"blob": rep("a", 64100)})
case("an event over the limit in multi-byte characters", False, None, meta={"blob": rep("\u00e9", 32100)})

doc = {
    "description": "Shared validation vectors of the DataEvent contract (crates/auditlog-event). "
                   "Each case: `event` (any JSON; an object {\"$repeat\": [text, n]} stands for text repeated n times), "
                   "`valid`, and for an invalid event the wire name of the offending `field` (null when the event as a whole is at fault: "
                   "not an object, or over 64 000 bytes of compact JSON). Run by crates/auditlog-event/tests/vectors.rs, "
                   "sdks/node/test/vectors.test.mjs and sdks/python/tests/test_vectors.py. Regenerate with `python3 gen.py`.",
    "vectors": vectors,
}
with open("events.json", "w", encoding="utf-8") as out:
    json.dump(doc, out, indent=1, ensure_ascii=False)
    out.write("\n")
print(len(vectors), "vectors")
