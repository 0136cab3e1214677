"""Crash-safe writes, the one way anything on disk changes: prepare aside, make durable, make visible by one rename.

A file is written to a temp sibling, flushed and fsynced, then renamed over the target (and the folder fsynced, so the
rename itself survives a power cut). A folder is built as a temp sibling (:func:`atomic_folder`) and swapped in with a
backup of the old one (:func:`replace_folder`): a failure at any point leaves the target as it was, and a killed run
leaves only a dot-named temp sibling behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary handle on a temp sibling of ``path``; when the block ends without an error the file is fsynced and
    renamed over ``path``, otherwise removed (``path`` untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file crash-safely (:func:`atomic_file`)."""
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> None:
    """Write sorted, indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    """Let numpy scalars and arrays through json.dumps."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@contextmanager
def atomic_folder(target: str | Path, *, tag: str = "building") -> Iterator[Path]:
    """Yield an empty temp sibling of ``target`` to fill; when the block ends without an error its files are fsynced and it
    replaces ``target`` (:func:`replace_folder`), otherwise it is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{tag}-"))
    built.chmod(0o755)  # mkdtemp's folder is private; the result is not
    try:
        yield built
        for path in built.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        replace_folder(built, target)
    finally:
        shutil.rmtree(built, ignore_errors=True)


def replace_folder(built: Path, target: Path) -> Path:
    """Swap a fully built folder into ``target`` (same parent folder), keeping the old one as a backup until the swap is done."""
    backup = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
    built.rename(target)
    _fsync_folder(target.parent)
    shutil.rmtree(backup, ignore_errors=True)
    return target


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
