"""UUIDv7 ids (RFC 9562): 48 bits of milliseconds, then random bits."""

from __future__ import annotations

import os
import time


def uuid7(ms: int | None = None) -> str:
    """A fresh UUIDv7 at ``ms`` (milliseconds since the epoch; now by default)."""
    t = int(time.time() * 1000) if ms is None else int(ms)
    r = int.from_bytes(os.urandom(10), "big")
    value = (t & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | (r >> 68 & 0xFFF) << 64 | 0b10 << 62 | (r & 0x3FFFFFFFFFFFFFFF)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
