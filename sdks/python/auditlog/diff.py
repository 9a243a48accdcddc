"""``diff(before, after)``: the ``changes`` of a ``changed`` event with only the fields
whose values really differ, personal or secret fields recorded as masked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .event import Change


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values, where ``true`` is not ``1`` (as the Rust side compares)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if isinstance(a, (int, float)) else a == b


def diff(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    fields: Iterable[str] | None = None,
    personal: Iterable[str] = (),
) -> dict[str, Change]:
    """``{field: {prev, next}}`` for each field whose value differs (``masked`` for a
    ``personal`` one). ``None`` for ``before`` (creation) or ``after`` (deletion)
    makes every field change. An empty result means nothing changed."""
    b = before or {}
    a = after or {}
    names = list(fields) if fields is not None else list(dict.fromkeys([*b.keys(), *a.keys()]))
    secret = set(personal)
    changes: dict[str, Change] = {}
    for field in names:
        prev = b.get(field) if before is not None else None
        nxt = a.get(field) if after is not None else None
        if before is not None and after is not None and json_equal(prev, nxt):
            continue
        if field in secret:
            changes[field] = {"prev": None, "next": None, "masked": True}
        else:
            changes[field] = {"prev": _plain(prev), "next": _plain(nxt)}
    return changes
