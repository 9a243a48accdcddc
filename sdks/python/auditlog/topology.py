"""The auditor's RabbitMQ topology, declared by the producer exactly as the Rust
publisher declares it (``crates/auditlog-amqp/src/topology.rs``): the topic
exchange, the dead-letter queue, the auditor's queue and its binding. Events
published before any auditor ever ran then wait in the queue instead of coming
back unroutable.

Each object is first probed with a passive declare on a channel of its own
(RabbitMQ closes the channel when the object is missing): an existing exchange or
queue is adopted as it was declared, whatever its durability, type or arguments
(the prototype declared them non-durable; changing a queue's type means moving
its messages, which is the operator's call). A missing exchange is declared
durable; a missing queue durable, of the configured type: a quorum queue by
default, the auditor's with a delivery limit of 20 after which the broker
dead-letters a message to the dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

QueueType = Literal["quorum", "classic"]

#: Deliveries of one message a quorum queue allows before dead-lettering it (the Rust ``DELIVERY_LIMIT``).
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class AmqpTopology:
    """Where the auditor reads: the names and queue type the Rust publisher and
    ``auditlog auditor`` use by default."""

    exchange: str = "api-stream"
    queue: str = "data-mutation-audits"
    binding_key: str = "*.data.mutated"
    dead_letter_queue: str = "data-mutation-audits.dead-letter"
    #: Type of a queue declared here; an existing queue keeps its type.
    queue_type: QueueType = "quorum"

    def __post_init__(self) -> None:
        if self.queue_type not in ("quorum", "classic"):
            raise TypeError(f"auditlog: queue_type is 'quorum' or 'classic', not {self.queue_type!r}")


def queue_arguments(queue_type: QueueType, dead_letters: str | None = None) -> dict[str, Any]:
    """The arguments a new queue is declared with; ``dead_letters`` for the
    auditor's queue, None for the dead-letter queue itself."""
    if queue_type != "quorum":
        return {}
    arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    if dead_letters is not None:
        arguments["x-delivery-limit"] = DELIVERY_LIMIT
        # The default exchange routes by queue name.
        arguments["x-dead-letter-exchange"] = ""
        arguments["x-dead-letter-routing-key"] = dead_letters
    return arguments


# pika (the thread emitter)


def _pika_exists(connection: Any, declare: Any) -> bool:
    import pika

    channel = connection.channel()
    try:
        declare(channel)
    except pika.exceptions.ChannelClosedByBroker:
        return False  # the broker closed the channel
    channel.close()
    return True


def _pika_queue(connection: Any, name: str, arguments: dict[str, Any]) -> None:
    import pika

    if _pika_exists(connection, lambda c: c.queue_declare(name, passive=True)):
        return
    channel = connection.channel()
    try:
        channel.queue_declare(name, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker:
        # Another process declared it in between, perhaps otherwise (PRECONDITION_FAILED): adopt theirs.
        if _pika_exists(connection, lambda c: c.queue_declare(name, passive=True)):
            return
        raise
    channel.close()


def declare_pika(connection: Any, t: AmqpTopology) -> None:
    """Exchange, dead-letter queue (first, so that the queue can dead-letter from
    its first message), queue and binding, on a ``pika.BlockingConnection``."""
    if not _pika_exists(connection, lambda c: c.exchange_declare(t.exchange, exchange_type="topic", passive=True)):
        channel = connection.channel()
        channel.exchange_declare(t.exchange, exchange_type="topic", durable=True)
        channel.close()
    _pika_queue(connection, t.dead_letter_queue, queue_arguments(t.queue_type))
    _pika_queue(connection, t.queue, queue_arguments(t.queue_type, t.dead_letter_queue))
    channel = connection.channel()
    channel.queue_bind(t.queue, t.exchange, routing_key=t.binding_key)
    channel.close()


# aio-pika (the asyncio emitter)


async def _aio_exists(connection: Any, declare: Any) -> bool:
    import aio_pika

    channel = await connection.channel()
    try:
        await declare(channel)
    except aio_pika.exceptions.ChannelClosed:
        return False  # the broker closed the channel
    await channel.close()
    return True


async def _aio_queue(connection: Any, name: str, arguments: dict[str, Any]) -> None:
    import aio_pika

    if await _aio_exists(connection, lambda c: c.declare_queue(name, passive=True)):
        return
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    except aio_pika.exceptions.ChannelClosed:
        # Another process declared it in between, perhaps otherwise (PRECONDITION_FAILED): adopt theirs.
        if await _aio_exists(connection, lambda c: c.declare_queue(name, passive=True)):
            return
        raise
    await channel.close()


async def declare_aio_pika(connection: Any, t: AmqpTopology) -> None:
    """:func:`declare_pika` on an ``aio_pika`` connection."""
    import aio_pika

    if not await _aio_exists(connection, lambda c: c.declare_exchange(t.exchange, aio_pika.ExchangeType.TOPIC, passive=True)):
        channel = await connection.channel()
        await channel.declare_exchange(t.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.close()
    await _aio_queue(connection, t.dead_letter_queue, queue_arguments(t.queue_type))
    await _aio_queue(connection, t.queue, queue_arguments(t.queue_type, t.dead_letter_queue))
    channel = await connection.channel()
    queue = await channel.get_queue(t.queue, ensure=False)
    await queue.bind(t.exchange, routing_key=t.binding_key)
    await channel.close()
