"""auditlog's producer SDK for Python: :class:`Emitter` (a background thread) and
:class:`AsyncEmitter` (asyncio) deliver events over the auditor's HTTP ingest or
RabbitMQ; :func:`diff` builds a ``changed`` event's changes; :class:`Outbox`
stages mutations in the application's own database transaction.

    from auditlog import Emitter
    audit = Emitter(url="http://127.0.0.1:3001", token=TOKEN, source="billing")
    audit.emit({"action": "viewed", "actorType": "users", "actorId": 1,
                "targetType": "invoices", "targetId": "2024-17"})
    audit.close()
"""

from .context import current_request_id, request_id, set_request_id
from .diff import diff, json_equal
from .emitter import AsyncEmitter, Emitter, EmitterStats
from .event import (
    DEFAULT_TENANT,
    MAX_EVENT_BYTES,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_TENANT_CHARS,
    MAX_TYPE_CHARS,
    AuditValidationError,
    Change,
    DataEvent,
    check,
    validate,
)
from .ids import uuid7
from .outbox import AsyncOutboxRelay, Outbox, OutboxRelay
from .spill import SpillInUse
from .topology import DELIVERY_LIMIT, AmqpTopology, QueueType
from .transport import (
    AmqpTransport,
    AsyncAmqpTransport,
    AsyncHttpTransport,
    HttpTransport,
    TransportError,
)

__all__ = [
    "AmqpTopology", "AmqpTransport", "AsyncAmqpTransport", "AsyncEmitter", "AsyncHttpTransport", "AsyncOutboxRelay", "AuditValidationError",
    "Change", "DEFAULT_TENANT", "DELIVERY_LIMIT", "DataEvent", "Emitter", "EmitterStats", "HttpTransport", "MAX_EVENT_BYTES", "MAX_ID_CHARS",
    "MAX_LABEL_CHARS", "MAX_TENANT_CHARS", "MAX_TYPE_CHARS", "Outbox", "OutboxRelay", "QueueType", "SpillInUse", "TransportError", "check",
    "current_request_id", "diff", "json_equal", "request_id", "set_request_id", "uuid7", "validate",
]
__version__ = "0.1.0"
