"""The storage side of probe registries: a local folder or a Hugging Face Hub model repo with the same layout.

Layout: ``manifest.json`` + ``README.md`` (both generated) at the root, one probe folder per probe. Hub
access goes through the real ``huggingface_hub`` client, which honours ``HF_TOKEN``, ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE``; downloads fetch only the folders asked for, into a local snapshot of one commit that
keeps serving while the Hub is unreachable; pushes write the probe folders, the manifest and the card in one
commit. Every change holds the registry's lock (:mod:`probes_hub.lock`); a local change is written aside and
renamed into place only when complete, and :meth:`RegistryStore.recover` repairs what a kill interrupted.

>>> store = RegistryStore("registry")  # doctest: +SKIP
>>> [e.name for e in store.list(dataset="math500")]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from probes_hub.atomic import StagedChange, atomic_write_json, recover, staged_change
from probes_hub.cache import cache_dir
from probes_hub.constants import CONFIG_NAME
from probes_hub.errors import UnknownName
from probes_hub.hub.manifest import MANIFEST_NAME, REGISTRY_CARD_NAME, Manifest, ProbeEntry, registry_card, scan_folders
from probes_hub.lock import folder_lock, lock_path
from probes_hub.paths import BUNDLED_REGISTRY
from probes_hub.schema.naming import is_hub_id, slug
from probes_hub.schema.validation import ProbeValidationError, read_json, validate_probe_dir

SNAPSHOT_RECORD = ".probes_hub_snapshot.json"
"""In a Hub registry's local snapshot: the commit it holds and when it was fetched."""


@dataclass(frozen=True)
class HubSnapshot:
    """The local copy a Hub registry is served from: its commit, when it was fetched, and why the Hub was not reached (if it was not)."""

    revision: str
    fetched_at: str
    unreachable: str = ""

    def note(self) -> str:
        """The line the app shows while the Hub is unreachable ('' while it is reachable)."""
        return f"registry as of {self.fetched_at}, the Hub is unreachable ({self.unreachable})" if self.unreachable else ""


@dataclass
class Recovery:
    """What opening a local registry found after an interrupted change, and what it did about it."""

    actions: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    """Probe folders that fail validation (left in place, not listed)."""


class RegistryStore:
    """The files of a probe registry, a local folder or a Hub repo id (``org/name``): manifest, folders, pull and push.

    It never loads probes; :class:`probes_hub.hub.registry.Registry` adds that.
    """

    def __init__(self, spec: str | Path | None = None, *, revision: str | None = None, token: str | None = None, create: bool = False):
        """``spec``: an existing folder, else a Hub repo id, else ``FileNotFoundError`` naming both.

        ``create=True`` (for pushing) also accepts a folder or Hub repo that does not exist yet.
        """
        self.spec = str(spec or BUNDLED_REGISTRY)
        self.revision = revision
        self.token = token
        self.create = create
        path = Path(self.spec)
        self.is_local = not is_hub_id(self.spec)
        if self.is_local and not path.is_dir():
            if not create or path.exists():
                raise FileNotFoundError(f"Registry folder {self.spec!r} does not exist (a Hub registry is given as 'org/name').")
            path.mkdir(parents=True)
        self._manifest: Manifest | None = None
        self.problems: dict[str, str] = {}
        """What reading the index met: a corrupt manifest, folders that fail validation (by name, with the reason)."""
        self.snapshot: HubSnapshot | None = None
        """Hub registries: the local snapshot the manifest was read from."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}{'' if self.revision is None else f', revision={self.revision!r}'})"

    @property
    def root(self) -> Path:
        if not self.is_local:
            raise ValueError(f"{self.spec} is a Hub repo; it has no local root.")
        return Path(self.spec)

    @property
    def lock_file(self) -> Path:
        """The lock every change of this registry holds (local: beside the folder; Hub: in the cache, for this machine's writers)."""
        return lock_path(self.root) if self.is_local else cache_dir("locks") / f".{slug(self.spec)}.lock"

    @contextmanager
    def writing(self, operation: str) -> Iterator[None]:
        """Hold the registry's lock for a change (see :mod:`probes_hub.lock`); nested use in one thread is free."""
        with folder_lock(self.lock_file, operation):
            yield

    @contextmanager
    def reading(self) -> Iterator[Manifest]:
        """A consistent view for a reader that opens many folders: the lock held shared, the manifest read inside it."""
        with folder_lock(self.lock_file, "read", shared=True):
            yield self.manifest(refresh=True)

    # -- reading -----------------------------------------------------------------------------------
    def manifest(self, *, refresh: bool = False) -> Manifest:
        """The registry's manifest (local: its manifest.json, or a scan of its folders when there is none)."""
        if self._manifest is None or refresh:
            self.problems = {}
            if not self.is_local:
                self._manifest = self._hub_manifest()
            elif (self.root / MANIFEST_NAME).exists():
                try:
                    self._manifest = _read_manifest(self.root / MANIFEST_NAME)
                except ProbeValidationError as error:  # one corrupt file must not take the registry down: list the folders instead
                    self._manifest, self.problems = scan_folders(self.root)
                    self.problems[MANIFEST_NAME] = f"{error} Listed the probe folders instead; 'python -m probes_hub index' rewrites it."
            else:
                self._manifest, self.problems = scan_folders(self.root)
        return self._manifest

    def list(self, **filters) -> list[ProbeEntry]:
        """Manifest entries matching ``model`` / ``dataset`` / ``label`` / ``probe_type`` (all when none given)."""
        return self.manifest().select(**filters)

    def entry(self, name: str | None = None, **filters) -> ProbeEntry:
        """One entry, by name or by filters that match exactly one probe."""
        if name is not None:
            return self.manifest().get(name)
        found = self.list(**filters)
        if len(found) != 1:
            names = ", ".join(e.name for e in found[:10]) or "none"
            raise UnknownName(f"Filters {filters} match {len(found)} probes in {self.spec} ({names}); give name= or narrower filters.")
        return found[0]

    def folder(self, name: str) -> Path:
        """A local path holding the named probe folder (downloaded for Hub registries)."""
        entry = self.manifest().get(name)
        path = self._fetch([entry.folder]) / entry.folder
        if not (path / CONFIG_NAME).exists():
            raise ProbeValidationError(f"{self.spec}: the manifest lists {name!r} but folder '{entry.folder}' is missing or has no {CONFIG_NAME}.")
        return path

    def check(self) -> dict[str, str]:
        """Problems of a local registry: missing folders, folders failing validation, folders the manifest omits."""
        problems = {}
        listed = self.manifest().entries
        for name, entry in listed.items():
            folder = self.root / entry.folder
            try:
                if not folder.is_dir():
                    raise ProbeValidationError(f"the manifest lists it but folder '{entry.folder}' is missing")
                validate_probe_dir(folder)
            except ProbeValidationError as error:
                problems[name] = str(error)
        for folder in self.root.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and folder.name not in listed and (folder / CONFIG_NAME).exists():
                problems[folder.name] = "folder present but not in manifest.json (run 'python -m probes_hub index')"
        return problems

    def pull(self, destination: str | Path, names: list[str] | None = None, **filters) -> list[Path]:
        """Copy probe folders (by name, or all matching the filters) into ``destination``, validated, atomically each."""
        entries = [self.manifest().get(n) for n in names] if names else self.list(**filters)
        if not entries:
            raise UnknownName(f"Nothing to pull from {self.spec} with names={names} filters={filters}.")
        source = self._fetch([e.folder for e in entries])
        destination = Path(destination)
        destination.mkdir(parents=True, exist_ok=True)
        pulled = []
        for entry in entries:
            folder = source / entry.folder
            if not folder.is_dir():
                raise ProbeValidationError(f"{self.spec}: the manifest lists {entry.name!r} but folder '{entry.folder}' is missing.")
            validate_probe_dir(folder)
            pulled.append(_copy_folder_atomically(folder, destination / entry.folder))
        return pulled

    # -- writing -----------------------------------------------------------------------------------
    def push(self, folders: list[str | Path], *, commit_message: str | None = None, replace: bool = True) -> list[str]:
        """Add (or, with ``replace``, also replace) probe folders; the manifest and card are updated with them (one Hub commit).

        Every folder is validated first, so an invalid one changes nothing; with ``replace=False`` a name the
        registry already holds is refused before anything is written. Local: under the registry's lock, every folder and
        the index are written aside and made visible only when all are complete (:func:`~probes_hub.atomic.staged_change`).
        """
        folders = [Path(f) for f in folders]
        configs = {f.name: validate_probe_dir(f) for f in folders}
        with self.writing(f"push {', '.join(sorted(configs))[:200]}"):
            manifest = self.manifest(refresh=True)
            taken = sorted(set(configs) & set(manifest.entries))
            if taken and not replace:
                raise ProbeValidationError(f"{self.spec} already holds {', '.join(taken)}; it is not replaced (choose another name).")
            entries = {**manifest.entries, **{name: ProbeEntry.from_config(name, config) for name, config in configs.items()}}
            updated = Manifest(entries, _now(), manifest.about)
            message = commit_message or f"Add probe(s): {', '.join(sorted(configs))}"
            if self.is_local:
                with staged_change(self.root) as change:
                    for folder in folders:
                        _stage_copy(change, folder, self.root / folder.name)
                    _stage_index(change, self.root, updated)
            else:
                self._hub_push(folders, updated, message)
            self._manifest = updated
        return sorted(configs)

    def remove(self, name: str, *, message: str | None = None) -> ProbeEntry:
        """Take one probe out of the registry (its folder and its manifest entry, in one change); returns its entry."""
        with self.writing(f"remove {name}"):
            manifest = self.manifest(refresh=True)
            entry = manifest.get(name)
            updated = Manifest({k: v for k, v in manifest.entries.items() if k != name}, _now(), manifest.about)
            if self.is_local:
                with staged_change(self.root) as change:
                    if (self.root / entry.folder).exists():
                        change.remove(self.root / entry.folder)
                    _stage_index(change, self.root, updated)
            else:
                self._hub_commit(updated, message or f"Remove probe {name}", removed=[entry.folder])
            self._manifest = updated
        return entry

    def recover(self) -> Recovery:
        """Bring a local registry back to a consistent state after an interrupted change (a kill, a power cut, a full disk).

        Under the lock: leftover temp folders and files are removed, a half-swapped folder is rolled back, and a manifest that
        disagrees with the probe folders (or is missing or corrupt) is rebuilt from them. Folders failing validation are reported.
        """
        with self.writing("recover"):
            actions = recover(self.root.parent, only=self.root.name) + recover(self.root)
            found, problems = scan_folders(self.root)
            listed = None
            if (self.root / MANIFEST_NAME).exists():
                try:
                    listed = _read_manifest(self.root / MANIFEST_NAME)
                except ProbeValidationError:
                    listed = None
            if listed is None or {k: v.to_dict() for k, v in listed.entries.items()} != {k: v.to_dict() for k, v in found.entries.items()}:
                before = set(listed.entries) if listed else set()
                added, dropped = sorted(set(found.entries) - before), sorted(before - set(found.entries))
                found.about = listed.about if listed else ""
                with staged_change(self.root) as change:
                    _stage_index(change, self.root, found)
                actions.append("rebuilt manifest.json from the probe folders" + ("" if listed else " (it was missing or unreadable)")
                               + (f"; added {', '.join(added)}" if added else "") + (f"; dropped {', '.join(dropped)}" if dropped else ""))
            self._manifest = None
        return Recovery(actions, problems)

    # -- Hub ---------------------------------------------------------------------------------------
    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(token=self.token)

    def _hub_manifest(self) -> Manifest:
        """The Hub repo's manifest, through a local snapshot (:attr:`snapshot`): fetched at the repo's current commit when the Hub
        answers, else the last one fetched, marked unreachable. An empty manifest when the repo has none yet (or, with
        ``create``, does not exist yet).

        Raises:
            FileNotFoundError: no such repo, or the Hub cannot be reached and there is no snapshot; one line saying which.
        """
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError

        local = self._snapshot_folder()
        try:
            info = self._api().repo_info(self.spec, revision=self.revision or "main", files_metadata=False)
            files = {sibling.rfilename for sibling in info.siblings or []}
            if MANIFEST_NAME in files:
                snapshot_download(self.spec, revision=info.sha, allow_patterns=[MANIFEST_NAME, REGISTRY_CARD_NAME], token=self.token, local_dir=local)
        except RepositoryNotFoundError as error:
            if self.create:
                return Manifest({}, "")
            raise FileNotFoundError(f"Registry {self.spec!r}: no such folder here, and no Hub repo of that id ({type(error).__name__}).") from error
        except Exception as error:  # offline, unreachable endpoint, bad token: serve the last snapshot, or say which spec could not be read
            return self._stale_snapshot(local, error)
        self.snapshot = HubSnapshot(info.sha, _now())
        atomic_write_json(local / SNAPSHOT_RECORD, {"revision": info.sha, "fetched_at": self.snapshot.fetched_at})
        if MANIFEST_NAME not in files:
            return Manifest({}, "")
        return _read_manifest(local / MANIFEST_NAME, where=f"{self.spec}/{MANIFEST_NAME}")

    def _snapshot_folder(self) -> Path:
        """Where this Hub registry's snapshot lives in the cache (plain files, not cache symlinks)."""
        return cache_dir("hub-registries") / slug(f"{self.spec}@{self.revision or 'main'}")

    def _stale_snapshot(self, local: Path, error: Exception) -> Manifest:
        """The manifest of the last snapshot, when the Hub could not be asked for a newer one."""
        try:
            record = json.loads((local / SNAPSHOT_RECORD).read_text(encoding="utf-8"))
            manifest = _read_manifest(local / MANIFEST_NAME, where=f"{self.spec}/{MANIFEST_NAME} (local snapshot)")
        except (OSError, ValueError, ProbeValidationError):
            raise FileNotFoundError(f"Registry {self.spec!r}: no such folder here, the Hub could not be reached ({type(error).__name__}: "
                                    f"{str(error)[:200]}) and there is no local snapshot of it. Check the path, or HF_ENDPOINT / HF_TOKEN "
                                    "for a Hub registry.") from error
        self.snapshot = HubSnapshot(str(record.get("revision", "")), str(record.get("fetched_at", "")), type(error).__name__)
        return manifest

    def _fetch(self, folders: list[str]) -> Path:
        """Root under which the given folders exist locally (Hub: downloaded into the snapshot at its commit, when not there yet)."""
        if self.is_local:
            return self.root
        from huggingface_hub import snapshot_download

        local = self._snapshot_folder()
        if self.snapshot is None:
            self.manifest()
        missing = [folder for folder in folders if not (local / folder / CONFIG_NAME).exists()]
        if missing and self.snapshot.unreachable:
            raise FileNotFoundError(f"Registry {self.spec!r}: {', '.join(missing[:5])} not in the local snapshot, and the Hub is unreachable "
                                    f"({self.snapshot.unreachable}); they load once it answers again.")
        if missing:
            patterns = [f"{folder}/*" for folder in missing] + [f"{folder}/**" for folder in missing]
            snapshot_download(self.spec, revision=self.snapshot.revision or self.revision, allow_patterns=patterns, token=self.token, local_dir=local)
        return local

    def _hub_push(self, folders: list[Path], manifest: Manifest, message: str) -> None:
        from huggingface_hub import CommitOperationAdd

        self._api().create_repo(self.spec, exist_ok=True)
        added = [CommitOperationAdd(path_in_repo=f"{folder.name}/{path.relative_to(folder).as_posix()}", path_or_fileobj=str(path))
                 for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()]
        self._hub_commit(manifest, message, added=added)

    def _hub_commit(self, manifest: Manifest, message: str, *, added: list | None = None, removed: list[str] = ()) -> None:
        """One Hub commit: the given file additions, folder deletions, and the new manifest and card."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        operations = [*(added or []), *(CommitOperationDelete(path_in_repo=f"{folder}/", is_folder=True) for folder in removed),
                      *(CommitOperationAdd(name, data) for name, data in _index_files(manifest).items())]
        self._api().create_commit(self.spec, operations=operations, commit_message=message, revision=self.revision)


def write_index(root: str | Path, manifest: Manifest | None = None, *, about: str | None = None, lock: bool = True) -> Manifest:
    """(Re)write ``manifest.json`` and ``README.md`` of a local registry from its folders (or the given manifest), under its lock
    (``lock=False`` only for a registry being built aside, which no one else sees yet)."""
    root = Path(root)
    with folder_lock(lock_path(root), "index") if lock else contextlib.nullcontext():
        if manifest is None:
            manifest, problems = scan_folders(root)
            if problems:
                raise ProbeValidationError("Cannot index; invalid probe folders: " + "; ".join(f"{k}: {v}" for k, v in problems.items()))
            previous = root / MANIFEST_NAME
            manifest.about = about if about is not None else (_read_manifest(previous).about if previous.exists() else "")
        with staged_change(root) as change:
            _stage_index(change, root, manifest)
    return manifest


def _index_files(manifest: Manifest) -> dict[str, bytes]:
    """The files a manifest is published as: ``manifest.json`` and the registry card."""
    return {MANIFEST_NAME: (json.dumps(manifest.to_dict(), indent=1, sort_keys=True) + "\n").encode("utf-8"),
            REGISTRY_CARD_NAME: registry_card(manifest).encode("utf-8")}


def _stage_index(change: StagedChange, root: Path, manifest: Manifest) -> None:
    for name, data in _index_files(manifest).items():
        change.file(root / name, data)


def _read_manifest(path: Path, *, where: str | None = None) -> Manifest:
    try:
        data = read_json(path)
    except (OSError, ProbeValidationError) as error:
        raise ProbeValidationError(f"{where or path}: unreadable manifest ({type(error).__name__}: {error}).") from error
    return Manifest.from_dict(data, where=where or str(path))


def _copy_folder_atomically(source: Path, target: Path) -> Path:
    """Copy a folder next to ``target`` under a temp name, then swap it in; a failure leaves ``target`` as it was."""
    with staged_change(target.parent) as change:
        _stage_copy(change, source, target)
    return target


def _stage_copy(change: StagedChange, source: Path, target: Path) -> None:
    """Copy the probe folder ``source`` aside as the replacement of ``target``, validated."""
    copy = change.folder(target)
    shutil.copytree(source, copy, dirs_exist_ok=True)
    validate_probe_dir(copy)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
