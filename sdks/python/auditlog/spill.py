"""The spill file: numbered events wait here as NDJSON while the auditor or broker is
away; a cursor file records how far delivery was confirmed, so a restart replays
only the rest. The file names are the Rust emitter's."""

from __future__ import annotations

import json
import os
from pathlib import Path

_DATA, _CURSOR, _LOCK = "spill.ndjson", "spill.cursor", "spill.lock"


class SpillInUse(RuntimeError):
    """Another live process holds the spill directory."""


class Spill:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        self._fd = os.open(self.dir / _DATA, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._len = os.fstat(self._fd).st_size
        if self._len > 0 and os.pread(self._fd, 1, self._len - 1) != b"\n":
            # A line torn by a crash: end it so the next append starts its own line.
            os.write(self._fd, b"\n")
            os.fsync(self._fd)
            self._len += 1
        try:
            cursor = int((self.dir / _CURSOR).read_text().strip() or 0)
        except (OSError, ValueError):
            cursor = 0
        self._cursor = min(cursor, self._len)

    def _lock(self) -> None:
        path = self.dir / _LOCK
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return
            except FileExistsError:
                try:
                    holder = int(path.read_text() or 0)
                except (OSError, ValueError):
                    holder = 0
                if holder and holder != os.getpid():
                    try:
                        os.kill(holder, 0)
                        raise SpillInUse(
                            f"auditlog: the spill directory {self.dir} is in use by process {holder}; "
                            "give each process its own spill_dir"
                        )
                    except ProcessLookupError:
                        pass
                path.unlink(missing_ok=True)
        raise SpillInUse(f"auditlog: cannot lock the spill directory {self.dir}")

    def has_backlog(self) -> bool:
        return self._cursor < self._len

    def backlog_bytes(self) -> int:
        return self._len - self._cursor

    def append(self, lines: list[str]) -> None:
        """Appends lines durably (fsynced before it returns)."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)
        self._len += len(data)

    def read_chunk(self, max_lines: int) -> tuple[list[str], int, int]:
        """Up to ``max_lines`` lines from the cursor: ``(lines, end, unreadable)``."""
        data = os.pread(self._fd, min(self._len - self._cursor, 16 * 1024 * 1024), self._cursor)
        lines: list[str] = []
        unreadable = 0
        start = 0
        while len(lines) < max_lines:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            raw = data[start:nl]
            start = nl + 1
            if not raw:
                continue
            try:
                text = raw.decode("utf-8")
                json.loads(text)
                lines.append(text)
            except ValueError:
                unreadable += 1
        return lines, self._cursor + start, unreadable

    def confirm(self, end: int) -> None:
        """Everything before ``end`` was delivered; empties the file once all of it was."""
        self._cursor = min(end, self._len)
        if self._cursor == self._len:
            os.ftruncate(self._fd, 0)
            self._len = self._cursor = 0
        tmp = self.dir / (_CURSOR + ".tmp")
        tmp.write_text(str(self._cursor))
        os.replace(tmp, self.dir / _CURSOR)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
        (self.dir / _LOCK).unlink(missing_ok=True)
