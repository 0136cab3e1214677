"""The storage side of probe registries: a local folder or a Hugging Face Hub model repo with the same layout.

Layout: ``manifest.json`` + ``README.md`` (both generated) at the root, one probe folder per probe. Hub
access goes through the real ``huggingface_hub`` client, which honours ``HF_TOKEN``, ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE``; downloads fetch only the folders asked for, pushes write the probe folders, the
manifest and the card in one commit.

>>> store = RegistryStore("registry")  # doctest: +SKIP
>>> [e.name for e in store.list(dataset="math500")]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from probes_hub.atomic import atomic_folder, atomic_write_text
from probes_hub.cache import cache_dir
from probes_hub.constants import CONFIG_NAME
from probes_hub.errors import UnknownName
from probes_hub.hub.manifest import MANIFEST_NAME, REGISTRY_CARD_NAME, Manifest, ProbeEntry, registry_card, scan_folders
from probes_hub.paths import BUNDLED_REGISTRY
from probes_hub.schema.naming import is_hub_id, slug
from probes_hub.schema.validation import ProbeValidationError, read_json, validate_probe_dir


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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}{'' if self.revision is None else f', revision={self.revision!r}'})"

    @property
    def root(self) -> Path:
        if not self.is_local:
            raise ValueError(f"{self.spec} is a Hub repo; it has no local root.")
        return Path(self.spec)

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
        registry already holds is refused before anything is written.
        """
        folders = [Path(f) for f in folders]
        configs = {f.name: validate_probe_dir(f) for f in folders}
        manifest = self.manifest(refresh=True)
        taken = sorted(set(configs) & set(manifest.entries))
        if taken and not replace:
            raise ProbeValidationError(f"{self.spec} already holds {', '.join(taken)}; it is not replaced (choose another name).")
        entries = {**manifest.entries, **{name: ProbeEntry.from_config(name, config) for name, config in configs.items()}}
        updated = Manifest(entries, _now(), manifest.about)
        message = commit_message or f"Add probe(s): {', '.join(sorted(configs))}"
        if self.is_local:
            for folder in folders:
                _copy_folder_atomically(folder, self.root / folder.name)
            write_index(self.root, updated)
        else:
            self._hub_push(folders, updated, message)
        self._manifest = updated
        return sorted(configs)

    # -- Hub ---------------------------------------------------------------------------------------
    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(token=self.token)

    def _hub_manifest(self) -> Manifest:
        """The Hub repo's manifest; an empty one when the repo has none yet (or, with ``create``, does not exist yet)."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            files = self._api().list_repo_files(self.spec, revision=self.revision)
        except RepositoryNotFoundError as error:
            if self.create:
                return Manifest({}, "")
            raise FileNotFoundError(f"Registry {self.spec!r}: no such folder here, and no Hub repo of that id ({type(error).__name__}).") from error
        except Exception as error:  # offline, unreachable endpoint, bad token: say which spec could not be read
            raise FileNotFoundError(f"Registry {self.spec!r}: no such folder here, and the Hub repo of that id could not be read "
                                    f"({type(error).__name__}: {error}). Check the path, or HF_ENDPOINT / HF_TOKEN for a Hub registry.") from error
        if MANIFEST_NAME not in files:
            return Manifest({}, "")
        path = hf_hub_download(self.spec, MANIFEST_NAME, revision=self.revision, token=self.token)
        return _read_manifest(Path(path), where=f"{self.spec}/{MANIFEST_NAME}")

    def _fetch(self, folders: list[str]) -> Path:
        """Root under which the given folders exist locally (Hub: a snapshot download of just those folders)."""
        if self.is_local:
            return self.root
        from huggingface_hub import snapshot_download

        patterns = [f"{folder}/*" for folder in folders] + [f"{folder}/**" for folder in folders]
        local_dir = cache_dir("hub-registries") / slug(f"{self.spec}@{self.revision or 'main'}")  # plain files, not cache symlinks
        return Path(snapshot_download(self.spec, revision=self.revision, allow_patterns=patterns, token=self.token, local_dir=local_dir))

    def _hub_push(self, folders: list[Path], manifest: Manifest, message: str) -> None:
        from huggingface_hub import CommitOperationAdd

        api = self._api()
        api.create_repo(self.spec, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=f"{folder.name}/{path.relative_to(folder).as_posix()}", path_or_fileobj=str(path))
                      for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()]
        operations += [CommitOperationAdd(MANIFEST_NAME, _manifest_bytes(manifest)),
                       CommitOperationAdd(REGISTRY_CARD_NAME, registry_card(manifest).encode("utf-8"))]
        api.create_commit(self.spec, operations=operations, commit_message=message, revision=self.revision)


def write_index(root: str | Path, manifest: Manifest | None = None, *, about: str | None = None) -> Manifest:
    """(Re)write ``manifest.json`` and ``README.md`` of a local registry from its folders (or the given manifest)."""
    root = Path(root)
    if manifest is None:
        manifest, problems = scan_folders(root)
        if problems:
            raise ProbeValidationError("Cannot index; invalid probe folders: " + "; ".join(f"{k}: {v}" for k, v in problems.items()))
        previous = root / MANIFEST_NAME
        manifest.about = about if about is not None else (_read_manifest(previous).about if previous.exists() else "")
    atomic_write_text(root / MANIFEST_NAME, _manifest_bytes(manifest).decode("utf-8"))
    atomic_write_text(root / REGISTRY_CARD_NAME, registry_card(manifest))
    return manifest


def _manifest_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.to_dict(), indent=1, sort_keys=True) + "\n").encode("utf-8")


def _read_manifest(path: Path, *, where: str | None = None) -> Manifest:
    try:
        data = read_json(path)
    except (OSError, ProbeValidationError) as error:
        raise ProbeValidationError(f"{where or path}: unreadable manifest ({type(error).__name__}: {error}).") from error
    return Manifest.from_dict(data, where=where or str(path))


def _copy_folder_atomically(source: Path, target: Path) -> Path:
    """Copy a folder next to ``target`` under a temp name, then swap it in; a failure leaves ``target`` as it was."""
    with atomic_folder(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        validate_probe_dir(tmp)
    return target


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
