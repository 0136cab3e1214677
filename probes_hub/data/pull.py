"""The data folder on a fresh machine: ``probes-hub data pull`` syncs it from a Hugging Face dataset repo with the same layout
(``gsm8k/``, ``math500/``, ``math_train/``, ``arc/``, ``mmlu_pro/``, ``outcomes/``) and a ``SHA256SUMS`` file.

The revision asked for (a branch, tag or commit; default ``main``) is resolved to its commit first and the files are fetched at
that commit, so a pull is pinned; every file is checked against ``SHA256SUMS`` (and nothing unlisted is kept) before the
folder is swapped in by one rename. ``probes-hub data push`` uploads a data folder with its ``SHA256SUMS`` as such a repo.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from probes_hub.atomic import atomic_folder, atomic_write_json
from probes_hub.cache import cache_dir

CHECKSUMS = "SHA256SUMS"
"""The repo's list of files and their sha256, one ``<sha256>  <path>`` line each (the format ``sha256sum`` writes)."""
PULLED = ".pulled.json"
"""Written beside the data after a pull: repo, commit, time."""
REPO_METADATA = (".gitattributes", "README.md")
"""Files a Hub repo may hold beside the data (its attributes, its card): kept, but neither listed nor read by any dataset."""


class DataIntegrityError(RuntimeError):
    """A pulled file is missing, unlisted or differs from ``SHA256SUMS``: nothing was replaced."""


@dataclass(frozen=True)
class PulledData:
    folder: Path
    repo_id: str
    commit: str
    files: int


def pulled_data_dir() -> Path:
    """Where ``data pull`` puts the data by default (the last place the data folder is looked for)."""
    return cache_dir() / "data"


def pull_data(repo_id: str, *, revision: str | None = None, out: str | Path | None = None) -> PulledData:
    """Download the dataset repo ``repo_id`` at ``revision`` (resolved to a commit) into ``out`` (default :func:`pulled_data_dir`),
    check every file against its ``SHA256SUMS``, and swap the folder in; the previous folder stays on any failure."""
    from huggingface_hub import HfApi, snapshot_download

    commit = HfApi().dataset_info(repo_id, revision=revision or "main").sha
    target = Path(out) if out else pulled_data_dir()
    with atomic_folder(target, tag="pulling") as building:
        snapshot_download(repo_id, repo_type="dataset", revision=commit, local_dir=building)
        shutil.rmtree(building / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping, not data
        files = verify_checksums(building)
        atomic_write_json(building / PULLED, {"repo": repo_id, "revision": commit, "pulled_at": datetime.now(UTC).isoformat(timespec="seconds")})
    return PulledData(target, repo_id, commit, files)


def verify_checksums(folder: Path) -> int:
    """Check every file of ``folder`` against its ``SHA256SUMS``; returns how many files were checked.

    Raises:
        DataIntegrityError: the list is missing, a listed file is missing or differs, or a file is not listed.
    """
    listing = folder / CHECKSUMS
    if not listing.is_file():
        raise DataIntegrityError(f"The repo has no {CHECKSUMS} file; create the repo with `probes-hub data push`, which writes it.")
    expected = {}
    for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
        digest, _, name = line.strip().partition("  ")
        if len(digest) != 64 or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise DataIntegrityError(f"{CHECKSUMS} line {number} is not '<sha256>  <relative path>': {line[:80]!r}")
        expected[name] = digest
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {CHECKSUMS}
    unlisted = present - set(expected) - set(REPO_METADATA)
    if unlisted:
        raise DataIntegrityError(f"Files not listed in {CHECKSUMS}: {sorted(unlisted)[:5]}; nothing was replaced.")
    for name, digest in expected.items():
        if name not in present:
            raise DataIntegrityError(f"{name} is listed in {CHECKSUMS} but missing; nothing was replaced.")
        if _sha256(folder / name) != digest:
            raise DataIntegrityError(f"{name} differs from its sha256 in {CHECKSUMS} (corrupt or changed); nothing was replaced.")
    return len(expected)


def data_files(folder: Path) -> list[Path]:
    """The files of a data folder that a repo holds (not the checksum list, the pull record or download bookkeeping)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (CHECKSUMS, PULLED) and ".cache" not in p.relative_to(folder).parts)


def push_data(folder: str | Path, repo_id: str, *, commit_message: str = "Upload the data folder") -> str:
    """Upload ``folder``'s files and their ``SHA256SUMS`` as the dataset repo ``repo_id`` (created if missing) in one commit, without
    writing into ``folder``; returns the commit id."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    files = data_files(folder)
    sums = "".join(f"{_sha256(p)}  {p.relative_to(folder).as_posix()}\n" for p in files)
    operations = [CommitOperationAdd(p.relative_to(folder).as_posix(), str(p)) for p in files]
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    info = api.create_commit(repo_id, [*operations, CommitOperationAdd(CHECKSUMS, sums.encode())], repo_type="dataset", commit_message=commit_message)
    return info.oid


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
