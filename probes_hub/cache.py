"""Where probes_hub keeps its on-disk caches, and atomic file writes shared by every writer."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from probes_hub.config import setting


def cache_dir(*parts: str) -> Path:
    """Return (and create) a cache folder: ``$PROBES_HUB_CACHE`` or ``~/.cache/probes_hub``."""
    root = Path(setting("PROBES_HUB_CACHE") or Path.home() / ".cache" / "probes_hub")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_text(*parts: str) -> str:
    """Stable hex digest of several strings (separated so that ('ab','c') != ('a','bc'))."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, memoised on disk by (path, size, mtime) so big files hash once."""
    path = Path(path).resolve()
    stat = path.stat()
    memo = cache_dir("file-hashes") / (sha256_text(str(path), str(stat.st_size), str(stat.st_mtime_ns)) + ".txt")
    if memo.exists():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    atomic_write_text(memo, value)
    return value


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file through a temp file in the same folder and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_folder(built: Path, target: Path) -> Path:
    """Swap a fully built folder into ``target`` (same parent folder), keeping the old one until the swap is done."""
    backup = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
    built.rename(target)
    shutil.rmtree(backup, ignore_errors=True)
    return target


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
