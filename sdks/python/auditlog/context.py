"""The request id of the code running now, in a context variable: set it per request
(``with request_id("…")``) and every event emitted inside carries it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("auditlog_request_id", default=None)


@contextlib.contextmanager
def request_id(value: str) -> Iterator[None]:
    """Events emitted inside the block (and in tasks it starts) carry ``requestId`` ``value``."""
    token = _current.set(value)
    try:
        yield
    finally:
        _current.reset(token)


def set_request_id(value: str | None) -> contextvars.Token[str | None]:
    """Sets the current request id (e.g. in a middleware); returns the token to reset it."""
    return _current.set(value)


def current_request_id() -> str | None:
    """The request id of the current context, if any."""
    return _current.get()
