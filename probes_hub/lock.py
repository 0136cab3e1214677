"""One writer at a time: an exclusive lock on a folder (a registry, a leaderboard), held by an open lock file.

The lock is an ``flock`` on the file ``.NAME.lock`` beside the folder (beside, so that a change swapping the whole folder
keeps it). The kernel releases it when its holder exits, however it exits, so a lock never outlives a killed process: there
is nothing stale to break by hand. The holder writes who it is into the file (pid, host, operation, since); a writer that
waits longer than its timeout gets an error naming that owner and how long it has held the lock. Readers that need a
consistent view take it shared. Nested use in one thread is free (re-entrant), so a change may call others that lock too.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_WAIT_SECONDS = 600.0
"""How long a change waits for the folder's current writer before giving up with the owner's name."""
_POLL_SECONDS = 0.05
_held = threading.local()


class FolderBusy(TimeoutError):
    """Another process (or thread) kept the folder's lock for longer than this change would wait."""


@dataclass(frozen=True)
class LockOwner:
    """Who holds (or last held) a lock, as written in the lock file."""

    pid: int
    host: str
    operation: str
    since: float

    def describe(self) -> str:
        started = datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
        return f"'{self.operation}' (pid {self.pid} on {self.host}, since {started}, {time.time() - self.since:.0f} s ago)"


def lock_path(folder: str | Path) -> Path:
    """The lock file of ``folder``: ``.NAME.lock`` beside it."""
    folder = Path(folder).absolute()
    return folder.with_name(f".{folder.name}.lock")


@contextmanager
def folder_lock(path: str | Path, operation: str, *, shared: bool = False, timeout: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the lock file ``path`` (see :func:`lock_path`) for the block: exclusively for a change, ``shared`` for a consistent read.

    Raises:
        FolderBusy: the lock was not free within ``timeout`` seconds; the message names its owner and says what to do.
    """
    path = Path(path)
    depths = _held.__dict__.setdefault("depths", {})
    key = str(path.absolute())
    if depths.get(key):
        depths[key] += 1
        try:
            yield
        finally:
            depths[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, shared=shared, timeout=timeout)
        if not shared:
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "operation": operation, "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)
        depths[key] = 1
        try:
            yield
        finally:
            depths.pop(key, None)
    finally:
        os.close(fd)  # closing releases the flock


def _acquire(fd: int, path: Path, *, shared: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                owner = read_owner(path)
                holder = owner.describe() if owner else "another process"
                raise FolderBusy(f"{path.name[1:-5]} is being changed by {holder}; gave up after {timeout:.0f} s. Wait for it to finish, "
                                 f"or stop that process (its lock is released the moment it exits).") from None
            time.sleep(_POLL_SECONDS)


def read_owner(path: str | Path) -> LockOwner | None:
    """The owner written in a lock file (None when the file is absent, empty or unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return LockOwner(int(data["pid"]), str(data["host"]), str(data["operation"]), float(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
