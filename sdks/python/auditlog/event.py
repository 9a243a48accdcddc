"""The DataEvent wire contract and its validation: the same rules as the Rust crate
``auditlog-event``, checked against the shared vectors in ``sdks/vectors/events.json``."""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypedDict

Action = Literal["viewed", "created", "changed", "deleted"]

MAX_EVENT_BYTES = 64_000
"""Largest event, in bytes of its compact JSON text."""
MAX_TYPE_CHARS = 64
MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 128
MAX_TENANT_CHARS = 64
"""Longest ``tenantId``, in characters."""
DEFAULT_TENANT = "default"
"""The tenant of an event that names none, as the auditor stores it when the
delivering token is bound to no tenant."""

_FIELDS = frozenset(
    "id action timestamp actorType actorId targetType targetId changes eventName source "
    "requestId meta producerId producerSeq ingestedBy via tenantId".split()
)
_ACTIONS = frozenset(("viewed", "created", "changed", "deleted"))
_HYPHENATED = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SIMPLE = re.compile(r"[0-9a-fA-F]{32}")
_TENANT_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_I64_MIN, _I64_MAX, _U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class Change(TypedDict, total=False):
    prev: Any
    next: Any
    masked: bool


class DataEvent(TypedDict, total=False):
    """An audit event as the application emits it; ``id``, ``timestamp``, ``source``
    and ``requestId`` are filled in when absent."""

    id: str
    action: Action
    timestamp: int
    actorType: str
    actorId: str | int
    targetType: str
    targetId: str | int
    changes: dict[str, Change] | None
    eventName: str | None
    source: str | None
    requestId: str | None
    meta: dict[str, Any] | None
    tenantId: str | None
    """The tenant (a customer of the deployment) the event belongs to: 1 to 64
    ASCII letters, digits, ``.``, ``_`` or ``-``. Without one it belongs to the
    default tenant, ``default``, unless it is delivered over HTTP with a token
    bound to a tenant, which gives it that tenant; such a token may deliver only
    its tenant's events."""


class AuditValidationError(ValueError):
    """An event breaks the contract; ``field`` names the wire field at fault (None
    when the event as a whole is: not an object, or too large)."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason if field is None else f"`{field}` {reason}")
        self.field = field


def dumps(value: Any) -> str:
    """Compact JSON, as the auditor measures and stores it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_uuid(text: str) -> bool:
    if len(text) == 36:
        return bool(_HYPHENATED.fullmatch(text))
    if len(text) == 32:
        return bool(_SIMPLE.fullmatch(text))
    if len(text) == 38 and text[0] == "{" and text[-1] == "}":
        return bool(_HYPHENATED.fullmatch(text[1:-1]))
    if len(text) == 45 and text.startswith("urn:uuid:"):
        return bool(_HYPHENATED.fullmatch(text[9:]))
    return False


def _object_type(field: str, value: Any) -> None:
    if value is None:
        raise AuditValidationError(field, "is required")
    if not isinstance(value, str):
        raise AuditValidationError(field, "must be a string")
    if not value:
        raise AuditValidationError(field, "must not be empty")
    if len(value) > MAX_TYPE_CHARS:
        raise AuditValidationError(field, "must be at most 64 characters")


def _object_id(field: str, value: Any) -> None:
    if value is None:
        raise AuditValidationError(field, "is required")
    if isinstance(value, str):
        if not value:
            raise AuditValidationError(field, "must not be empty")
        if len(value) > MAX_ID_CHARS:
            raise AuditValidationError(field, "must be at most 128 characters")
        return
    if _is_int(value) and _I64_MIN <= value <= _U64_MAX:
        return
    raise AuditValidationError(field, "must be a string or an integer")


def _label(field: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise AuditValidationError(field, "must be a string")
    if len(value) > MAX_LABEL_CHARS:
        raise AuditValidationError(field, "must be at most 128 characters")


def _tenant(field: str, value: Any) -> None:
    """Checks a tenant id as the auditor's ``parse_tenant`` does."""
    if value is None:
        return
    if not isinstance(value, str):
        raise AuditValidationError(field, "must be a string")
    # Only ASCII is allowed, so characters and bytes agree once the characters are checked.
    if not _TENANT_CHARS.fullmatch(value):
        raise AuditValidationError(field, "may hold only letters, digits, `.`, `_` and `-`")
    if not 0 < len(value) <= MAX_TENANT_CHARS:
        raise AuditValidationError(field, "must be 1 to 64 characters")


def _check_changes(value: Any) -> int:
    if not isinstance(value, dict):
        raise AuditValidationError("changes", "must be an object of field → {prev, next}")
    for field, change in value.items():
        if not isinstance(change, dict):
            raise AuditValidationError("changes", f"`{field}` must be an object {{prev, next}}")
        if any(key not in ("prev", "next", "masked") for key in change):
            raise AuditValidationError("changes", f"`{field}` may have only `prev`, `next` and `masked`")
        masked = change.get("masked", False)
        if not isinstance(masked, bool):
            raise AuditValidationError("changes", f"`{field}`.masked must be true or false")
        if masked:
            if change.get("prev") is not None or change.get("next") is not None:
                raise AuditValidationError("changes", f"`{field}` is masked, so `prev` and `next` must be null")
        elif "prev" not in change or "next" not in change:
            raise AuditValidationError("changes", f"`{field}` must have both `prev` and `next`")
    return len(value)


def validate(event: Any) -> str:
    """Checks a whole wire event against the contract, raising
    :class:`AuditValidationError` for the first field at fault in the auditor's
    order; returns the event's compact JSON text (whose size it checked)."""
    if not isinstance(event, dict):
        raise AuditValidationError(None, "an event must be a JSON object")
    for key in event:
        if key not in _FIELDS:
            raise AuditValidationError(key, "is not a data-event field")
    for field in ("ingestedBy", "via"):
        if field in event:
            raise AuditValidationError(field, "is recorded by the auditor when it receives the event; leave it out")
    e = event.get
    if e("id") is not None:
        if not isinstance(e("id"), str):
            raise AuditValidationError("id", "must be a UUID string")
        if not _is_uuid(e("id")):
            raise AuditValidationError("id", "must be a UUID")
    action = e("action")
    if action is None:
        raise AuditValidationError("action", "is required")
    if not isinstance(action, str):
        raise AuditValidationError("action", "must be a string")
    if action not in _ACTIONS:
        raise AuditValidationError("action", f"`{action}` is not one of viewed, created, changed, deleted")
    timestamp = e("timestamp")
    if timestamp is not None:
        if not _is_int(timestamp) and not isinstance(timestamp, float):
            raise AuditValidationError("timestamp", "must be an integer of milliseconds since the Unix epoch")
        if not _is_int(timestamp) or not 0 <= timestamp <= _I64_MAX:
            raise AuditValidationError("timestamp", "must be a non-negative integer of milliseconds")
    _object_type("actorType", e("actorType"))
    _object_id("actorId", e("actorId"))
    _object_type("targetType", e("targetType"))
    _object_id("targetId", e("targetId"))
    changes = e("changes")
    count = _check_changes(changes) if changes is not None else 0
    if action == "changed" and changes is None:
        raise AuditValidationError("changes", "is required for a `changed` event")
    if action == "changed" and count == 0:
        raise AuditValidationError("changes", "must name at least one field for a `changed` event")
    if action == "viewed" and changes is not None:
        raise AuditValidationError("changes", "is not allowed on a `viewed` event")
    _label("producerId", e("producerId"))
    seq = e("producerSeq")
    if seq is not None and not (_is_int(seq) and 0 < seq <= _U64_MAX):
        raise AuditValidationError("producerSeq", "must be a positive integer")
    if (e("producerId") is not None) != (seq is not None):
        raise AuditValidationError(
            "producerSeq" if e("producerId") is not None else "producerId", "producerId and producerSeq go together"
        )
    if e("meta") is not None and not isinstance(e("meta"), dict):
        raise AuditValidationError("meta", "must be an object")
    _label("eventName", e("eventName"))
    _label("source", e("source"))
    _label("requestId", e("requestId"))
    _tenant("tenantId", e("tenantId"))
    text = dumps(event)
    if len(text) * 4 > MAX_EVENT_BYTES:
        size = len(text.encode("utf-8"))
        if size > MAX_EVENT_BYTES:
            raise AuditValidationError(None, f"the event is {size} bytes; at most {MAX_EVENT_BYTES} are accepted")
    return text


def check(event: Any) -> tuple[bool, str | None]:
    """``(True, None)`` for a valid event, else ``(False, field)``."""
    try:
        validate(event)
    except AuditValidationError as err:
        return False, err.field
    return True, None
