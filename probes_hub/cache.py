"""Where probes_hub keeps its on-disk caches, and the hashes that key them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from probes_hub.atomic import atomic_write_text
from probes_hub.config import setting


def cache_dir(*parts: str) -> Path:
    """Return (and create) a cache folder: ``$PROBES_HUB_CACHE`` or ``~/.cache/probes_hub``."""
    root = Path(setting("PROBES_HUB_CACHE") or Path.home() / ".cache" / "probes_hub")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_text(*parts: str | bytes) -> str:
    """Stable hex digest of several strings or byte strings (separated so that ('ab','c') != ('a','bc'))."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8"))
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
