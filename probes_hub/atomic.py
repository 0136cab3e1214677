"""Crash-safe writes, the one way anything on disk changes: prepare aside, make durable, make visible by one rename.

A file is written to a temp sibling, flushed and fsynced, then renamed over the target (and the folder fsynced, so the
rename itself survives a power cut). A folder is built as a temp sibling (:func:`atomic_folder`) and swapped in with a
backup of the old one (:func:`replace_folder`): a failure at any point leaves the target as it was, and a killed run
leaves only a dot-named temp sibling behind.
"""

from __future__ import annotations

import errno
import json
import os
import re
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
    with staged_change(Path(target).parent) as change:
        yield change.folder(target, tag=tag)


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


class DiskFull(OSError):
    """No space was left for a change; it was undone before anything became visible (the message names the place)."""


class StagedChange:
    """Several files and folders prepared aside as temp siblings, made visible only after every byte is written and fsynced.

    Writing is where a change can fail (a full disk, a bad input, a kill); the renames that follow cannot run out of space.
    A killed change leaves only dot-named siblings, which :func:`recover` removes (or, for a half-swapped folder, rolls back).
    """

    def __init__(self) -> None:
        self._folders: list[tuple[Path, Path]] = []
        self._files: list[tuple[Path, Path]] = []
        self._removals: list[Path] = []

    def folder(self, target: str | Path, *, tag: str = "building") -> Path:
        """An empty temp folder that will replace ``target``."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        built = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{tag}-"))
        built.chmod(0o755)  # mkdtemp's folder is private; the result is not
        self._folders.append((built, target))
        return built

    def file(self, target: str | Path, data: bytes) -> None:
        """``data`` will replace the file ``target``."""
        target = Path(target)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        self._files.append((Path(tmp), target))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self, target: str | Path) -> None:
        """The folder ``target`` will be removed (renamed aside first, so it disappears in one step)."""
        self._removals.append(Path(target))

    def commit(self) -> None:
        """Make everything durable, then visible: folders first, then files (an index written last describes them)."""
        for built, _ in self._folders:
            for path in built.rglob("*"):
                if path.is_file():
                    with open(path, "rb") as handle:
                        os.fsync(handle.fileno())
        for built, target in self._folders:
            replace_folder(built, target)
        for target in self._removals:
            doomed = target.with_name(f".{target.name}.removing-{os.getpid()}")
            target.rename(doomed)
            _fsync_folder(target.parent)
            shutil.rmtree(doomed, ignore_errors=True)
        for tmp, target in self._files:
            os.replace(tmp, target)
            _fsync_folder(target.parent)
        self._folders, self._files, self._removals = [], [], []

    def discard(self) -> None:
        """Remove whatever was prepared and not committed."""
        for built, _ in self._folders:
            shutil.rmtree(built, ignore_errors=True)
        for tmp, _ in self._files:
            tmp.unlink(missing_ok=True)
        self._folders, self._files, self._removals = [], [], []


@contextmanager
def staged_change(where: str | Path) -> Iterator[StagedChange]:
    """A :class:`StagedChange` committed when the block ends without an error, else discarded (nothing visible changes).

    A full disk anywhere in it is raised as :class:`DiskFull` naming ``where``.
    """
    change = StagedChange()
    try:
        yield change
        change.commit()
    except OSError as error:
        if _disk_full(error):
            raise DiskFull(errno.ENOSPC, f"No space left on the device holding {where}: nothing was changed. Free some space and try again.") from error
        raise
    finally:
        change.discard()


def _disk_full(error: OSError) -> bool:
    """ENOSPC, also inside :class:`shutil.Error`, which ``copytree`` raises with each file's error as text."""
    return error.errno == errno.ENOSPC or (isinstance(error, shutil.Error) and f"[Errno {errno.ENOSPC}]" in str(error))


LEFTOVER = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<backup>old)|(?:building|removing|convert|pulling)-[\w-]+|[\w]+\.tmp)$")
"""Names a killed change leaves: ``.NAME.old`` (a swap's backup), ``.NAME.TAG-xxxx`` (a folder being built or removed), ``.NAME.xxxx.tmp``."""


def recover(folder: str | Path, *, only: str | None = None) -> list[str]:
    """Clean up after changes killed inside ``folder`` (only those of the entry ``only``, when given); returns what was done.

    Leftover temp files and folders are removed; a backup whose target is missing (a swap killed halfway) is renamed back.
    Call it only while no change is running there (under the folder's lock).
    """
    done = []
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else ():
        match = LEFTOVER.match(path.name)
        if not match or (only is not None and match["name"] != only):
            continue
        target = path.with_name(match["name"])
        if match["backup"] and not target.exists():
            path.rename(target)
            done.append(f"restored {target.name} from the backup an interrupted change left")
        else:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            done.append(f"removed {path.name}, left by an interrupted change")
    if done:
        _fsync_folder(Path(folder))
    return done


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
