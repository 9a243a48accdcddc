"""A PEP 517 build backend with no dependencies, so that ``pip install ./sdks/python``
works offline: it zips the ``auditlog`` package into a pure-Python wheel (and an
sdist). The metadata is read from pyproject.toml."""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _metadata() -> str:
    p = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p['description']}",
        f"Requires-Python: {p['requires-python']}",
        f"License: {p['license']['text']}",
    ]
    for extra, requirements in p.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in requirements]
    readme = (ROOT / p["readme"]).read_text(encoding="utf-8")
    return "\n".join(lines) + "\nDescription-Content-Type: text/markdown\n\n" + readme


def _files() -> list[Path]:
    return sorted(
        f for f in (ROOT / "auditlog").rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
    )


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _wheel(wheel_directory: str, editable: bool) -> str:
    p = _project()
    dist = f"{p['name']}-{p['version']}"
    name = f"{dist}-py3-none-any.whl"
    entries: list[tuple[str, bytes]] = []
    if editable:
        entries.append((f"{p['name']}.pth", (str(ROOT) + "\n").encode()))
    else:
        entries += [(f.relative_to(ROOT).as_posix(), f.read_bytes()) for f in _files()]
    info = f"{dist}.dist-info"
    entries.append((f"{info}/METADATA", _metadata().encode("utf-8")))
    entries.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: auditlog-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    record = [_record_line(n, d) for n, d in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in entries:
            z.writestr(n, d)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: D103
    return _wheel(wheel_directory, editable=False)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: D103
    return _wheel(wheel_directory, editable=True)


def build_sdist(sdist_directory, config_settings=None):  # noqa: D103
    p = _project()
    dist = f"{p['name']}-{p['version']}"
    name = f"{dist}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for f in [ROOT / "pyproject.toml", ROOT / "README.md", *sorted((ROOT / "_build").glob("*.py")), *_files()]:
            t.add(f, arcname=f"{dist}/{f.relative_to(ROOT).as_posix()}")
        info = tarfile.TarInfo(f"{dist}/PKG-INFO")
        data = _metadata().encode()
        info.size = len(data)
        import io

        t.addfile(info, io.BytesIO(data))
    return name
