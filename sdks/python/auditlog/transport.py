"""Transports: where a numbered batch goes. HTTP ingest (NDJSON POSTed to the
auditor's ``/api/data-events`` with a service token; the auditor answers after its
store committed) or RabbitMQ (one persistent message holding a JSON array, to the
topic exchange ``api-stream`` with routing key ``<source>.data.mutated``,
``mandatory``, with publisher confirms). Each raises on anything short of a
confirmation; the emitter retries."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .topology import AmqpTopology, declare_aio_pika, declare_pika

log = logging.getLogger("auditlog")

TokenSource = str | Callable[[], str] | None


class TransportError(RuntimeError):
    """A batch was not confirmed; it is retried."""


class Transport(Protocol):
    def publish(self, lines: Sequence[str], timeout: float) -> None: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def publish(self, lines: Sequence[str], timeout: float) -> None: ...
    async def close(self) -> None: ...


class HttpTransport:
    """POSTs NDJSON to the auditor at ``url`` (e.g. ``http://127.0.0.1:3001``)."""

    def __init__(self, url: str, token: TokenSource = None) -> None:
        self.endpoint = url.rstrip("/") + "/api/data-events"
        self.token = token

    def publish(self, lines: Sequence[str], timeout: float) -> None:
        headers = {"content-type": "application/x-ndjson"}
        token = self.token() if callable(self.token) else self.token
        if token:
            headers["authorization"] = f"Bearer {token}"
        body = ("\n".join(lines) + "\n").encode("utf-8")
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:500].decode("utf-8", "replace")
            if err.code == 422:
                # Every event refused: retrying cannot help (the Rust emitter logs it too).
                log.error("auditlog: the auditor refused every event of a batch of %d: %s", len(lines), detail)
                return
            raise TransportError(f"the auditor answered {err.code}: {detail}") from err
        except (OSError, urllib.error.URLError) as err:
            raise TransportError(f"the auditor is unreachable: {err}") from err
        try:
            rejected = json.loads(text).get("meta", {}).get("rejected") or []
        except ValueError:
            rejected = []
        if rejected:
            log.error("auditlog: the auditor refused %d event(s) of a batch: %s", len(rejected), rejected[:3])

    def close(self) -> None:
        pass


class AsyncHttpTransport:
    """:class:`HttpTransport` for asyncio: the request runs on a worker thread."""

    def __init__(self, url: str, token: TokenSource = None) -> None:
        self._sync = HttpTransport(url, token)

    async def publish(self, lines: Sequence[str], timeout: float) -> None:
        await asyncio.to_thread(self._sync.publish, list(lines), timeout)

    async def close(self) -> None:
        pass


def amqp_user(url: str) -> str | None:
    """The user an ``amqp://user:pass@host/…`` URL connects as (``guest`` when none);
    None when percent-encoded (the broker must see exactly its own name)."""
    authority = urlsplit(url).netloc
    user = authority.rsplit("@", 1)[0].split(":")[0] if "@" in authority else "guest"
    return user if user and "%" not in user else None


def routing_key(source: str) -> str:
    return f"{source}.data.mutated"


class AmqpTransport:
    """Publishes to RabbitMQ with ``pika`` (install ``auditlog[amqp]``). On
    connecting it declares the exchange and the auditor's queue and binding as
    the Rust publisher does (``topology``, default :class:`AmqpTopology`; an
    existing exchange or queue is adopted as it was declared), so that events
    published before any auditor ever ran wait in the queue."""

    def __init__(self, url: str, source: str, exchange: str = "api-stream", topology: AmqpTopology | None = None) -> None:
        try:
            import pika  # noqa: F401
        except ImportError as err:  # pragma: no cover
            raise ImportError("the RabbitMQ transport needs pika: pip install 'auditlog[amqp]'") from err
        self.topology = topology or AmqpTopology(exchange=exchange)
        self.url, self.exchange, self.routing_key = url, self.topology.exchange, routing_key(source)
        self.user = amqp_user(url)
        self._connection: Any = None
        self._channel: Any = None

    def _open(self) -> None:
        import pika

        params = pika.URLParameters(self.url)
        params.client_properties = {"connection_name": "auditlog python producer"}
        connection = pika.BlockingConnection(params)
        try:
            declare_pika(connection, self.topology)
            channel = connection.channel()
            channel.confirm_delivery()
        except Exception:
            connection.close()
            raise
        self._connection, self._channel = connection, channel

    def publish(self, lines: Sequence[str], timeout: float) -> None:
        import pika

        try:
            if self._channel is None or not self._channel.is_open:
                self._open()
            body = ("[" + ",".join(lines) + "]").encode("utf-8")
            props = pika.BasicProperties(delivery_mode=2, content_type="application/json", user_id=self.user)
            self._channel.basic_publish(self.exchange, self.routing_key, body, props, mandatory=True)
        except pika.exceptions.UnroutableError as err:
            self._reset()
            raise TransportError(
                f"RabbitMQ could not route the batch ({self.routing_key} on {self.exchange}): is the auditor's queue bound?"
            ) from err
        except pika.exceptions.NackError as err:
            self._reset()
            raise TransportError("RabbitMQ did not accept the batch (nack)") from err
        except Exception as err:  # connection trouble of any kind: reconnect next time
            self._reset()
            raise TransportError(f"RabbitMQ: {err!r}") from err

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass

    def close(self) -> None:
        self._reset()


class AsyncAmqpTransport:
    """Publishes to RabbitMQ with ``aio-pika`` (install ``auditlog[amqp]``),
    declaring what :class:`AmqpTransport` declares."""

    def __init__(self, url: str, source: str, exchange: str = "api-stream", topology: AmqpTopology | None = None) -> None:
        try:
            import aio_pika  # noqa: F401
        except ImportError as err:  # pragma: no cover
            raise ImportError("the asyncio RabbitMQ transport needs aio-pika: pip install 'auditlog[amqp]'") from err
        self.topology = topology or AmqpTopology(exchange=exchange)
        self.url, self.exchange_name, self.routing_key = url, self.topology.exchange, routing_key(source)
        self.user = amqp_user(url)
        self._connection: Any = None
        self._exchange: Any = None

    async def _open(self) -> None:
        import aio_pika

        connection = await aio_pika.connect(self.url, client_properties={"connection_name": "auditlog python producer"})
        try:
            await declare_aio_pika(connection, self.topology)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(self.exchange_name, ensure=False)
        except Exception:
            await connection.close()
            raise
        self._connection, self._exchange = connection, exchange

    async def publish(self, lines: Sequence[str], timeout: float) -> None:
        import aio_pika

        try:
            if self._exchange is None or self._connection is None or self._connection.is_closed:
                await self._open()
            message = aio_pika.Message(
                ("[" + ",".join(lines) + "]").encode("utf-8"),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                user_id=self.user,
            )
            await self._exchange.publish(message, routing_key=self.routing_key, mandatory=True, timeout=timeout)
        except Exception as err:
            await self._reset()
            raise TransportError(f"RabbitMQ: {err!r}") from err

    async def _reset(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:
                pass

    async def close(self) -> None:
        await self._reset()


class Backoff:
    """The retry pace: 50 ms doubling up to 5 s, as the Rust emitter's."""

    FIRST, MAX = 0.05, 5.0

    def __init__(self) -> None:
        self.pause = self.FIRST

    def next(self) -> float:
        pause = self.pause
        self.pause = min(self.pause * 2, self.MAX)
        return pause

    def reset(self) -> None:
        self.pause = self.FIRST
