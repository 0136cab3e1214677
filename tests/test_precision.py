"""The precision option: float32 / bfloat16 / auto, probes read in another precision only after a passing verify-dtype check.

Tests never depend on the CPU: whether it has bfloat16 units is set by monkeypatching where ``auto`` is tested, and a
bfloat16 forward pass runs on any CPU (slower where it has no such units).
"""

import json

import numpy as np
import pytest

from probes_hub.cli import main
from probes_hub.config import ConfigError
from probes_hub.extract import precision
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.models import load_model
from probes_hub.extract.precision import fingerprint_dtype, resolve_dtype, use_dtype, weights_fingerprint, with_dtype
from probes_hub.hub.registry import Registry, write_index
from probes_hub.probes import Probe, probe_matches, serving_dtype
from space_app.predictor import Predictor

from .conftest import WORDS, train_on_folder_model


def test_auto_follows_the_hardware_and_the_request_order(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") == "float32" and resolve_dtype("auto", "cuda") == "bfloat16"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.delenv("PROBES_HUB_DTYPE", raising=False)
    assert resolve_dtype(None, "cpu") == "float32"  # the default
    monkeypatch.setenv("PROBES_HUB_DTYPE", "bfloat16")
    assert resolve_dtype(None, "cpu") == "bfloat16"
    with use_dtype("float32"):  # a command's --dtype wins over the setting
        assert resolve_dtype(None, "cpu") == "float32"
    assert resolve_dtype("float32", "cpu") == "float32"  # and an explicit argument over both
    monkeypatch.setenv("PROBES_HUB_DTYPE", "half")
    with pytest.raises(ConfigError, match="PROBES_HUB_DTYPE='half'.*float32, bfloat16, auto"):
        resolve_dtype(None, "cpu")
    with pytest.raises(ValueError, match="--dtype must be one of"):
        resolve_dtype("fp8", "cpu")


def test_fingerprints_keep_the_weights_apart_from_the_precision():
    single, pair = "gguf:abc:float32", "pair:gguf:abc:float32+local:def:float32"
    assert fingerprint_dtype(single) == "float32" and weights_fingerprint(single) == "gguf:abc"
    assert with_dtype(pair, "bfloat16") == "pair:gguf:abc:bfloat16+local:def:bfloat16" and weights_fingerprint(pair) == "pair:gguf:abc+local:def"
    assert fingerprint_dtype("tiny") is None


@pytest.fixture(scope="module")
def folder_model_registry(tmp_path_factory):
    """(model folder, registry) with a graded linear probe and a length probe, trained by the CLI in float32 on a tiny model saved as a folder."""
    return train_on_folder_model(tmp_path_factory.mktemp("precision"), seed=1, longest=30, rows=120, words_per_level=6,
                                 cli_args=["--probe", "linear", "length", "--dtype", "float32"])


def test_a_bfloat16_model_is_the_same_weights_with_its_own_cache_key(folder_model_registry):
    model, _ = folder_model_registry
    full, half = (ModelFeatures(load_model(str(model), dtype=dtype)) for dtype in ("float32", "bfloat16"))
    assert half.dtype == "bfloat16" and fingerprint_dtype(half.fingerprint) == "bfloat16" and half.fingerprint != full.fingerprint
    assert weights_fingerprint(half.fingerprint) == weights_fingerprint(full.fingerprint)
    assert full.in_dtype("bfloat16").fingerprint == half.fingerprint  # a converted copy is the model loaded in bfloat16
    questions = [" ".join(WORDS[:9]), " ".join(WORDS[3:20])]
    a, b, c = (source.features(questions, [1, 3])[0].activations for source in (full, half, full.in_dtype("bfloat16")))
    np.testing.assert_array_equal(b, c)
    relative = np.linalg.norm(a - b) / np.linalg.norm(a)
    assert 0 < relative < 0.05  # bfloat16 moves the activations a little, never to nothing


def test_verify_dtype_records_checks_and_only_passing_probes_are_read_in_bfloat16(folder_model_registry, tmp_path, capsys):
    import shutil

    model, trained = folder_model_registry
    registry = tmp_path / "registry"
    shutil.copytree(trained, registry)
    capsys.readouterr()
    assert main(["verify-dtype", "--registry", str(registry), "--model", str(model), "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "RESULT probes=1 " in out  # the linear probe; the length probe reads no activations
    [linear] = [p for p in registry.iterdir() if p.name.endswith("--linear")]
    config = json.loads((linear / "config.json").read_text())
    check = config["precision"]["bfloat16"]
    assert check["own_dtype"] == "float32" and check["n"] == config["data"]["n_test"] and 0 < check["max_abs_diff"]
    assert "Read in other precisions" in (linear / "README.md").read_text() and "bfloat16: " in (linear / "README.md").read_text()
    probe = Probe.from_pretrained(linear)
    half = ModelFeatures(load_model(str(model), dtype="bfloat16"))
    assert probe_matches(probe, half)  # the same weights, in another precision
    assert serving_dtype(probe, "bfloat16") == ("bfloat16" if check["passed"] else "float32")

    failing = dict(check, spearman=0.9, passed=False)  # a probe that failed its check (the values a failing run writes)
    config["precision"]["bfloat16"] = failing
    (linear / "config.json").write_text(json.dumps(config))
    write_index(registry)
    prediction = Predictor(half, Registry(str(registry))).predict(" ".join(WORDS[:12]))
    assert prediction.dtype == "bfloat16"
    assert any("read in float32" in notice and linear.name in notice for notice in prediction.notices)
    full = ModelFeatures(load_model(str(model), dtype="float32"))
    [reading] = [r for r in prediction.difficulty if r.probe_type == "linear"]
    expected = Probe.from_pretrained(linear).predict(full.features([" ".join(WORDS[:12])], [probe.layer])[0])[0]
    assert reading.value == pytest.approx(float(expected), rel=1e-6)  # read from float32 activations, as trained

    assert main(["predict", "--probe", str(linear), "--model", str(model), "--dtype", "bfloat16", "--question", " ".join(WORDS[:12]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0][linear.name] == pytest.approx(float(expected), rel=1e-6)  # the CLI follows the same rule


def test_every_extraction_path_runs_in_bfloat16(tiny):
    """Packed (CPU default) and padded (GPU default) batches, and every-token states, from the bfloat16 copy of the tiny model."""
    from probes_hub.extract.activations import extract, extract_tokens

    half = tiny.in_dtype("bfloat16")
    assert half.dtype_name == "bfloat16" and next(half.model.parameters()).dtype.is_floating_point and tiny.dtype_name == "float32"
    prompts = [[5, 6, 7, 8, 9], [5, 6, 10, 11, 12, 13, 14], [5, 6, 15, 16]]
    packed = extract(half, prompts, [1, 3], [-2, -1], shared_prefix=[5, 6], packed=True, progress=False)
    padded = extract(half, prompts, [1, 3], [-2, -1], shared_prefix=[5, 6], packed=False, progress=False)
    full = extract(tiny, prompts, [1, 3], [-2, -1], shared_prefix=[5, 6], progress=False)
    assert packed.dtype == padded.dtype == np.float32
    np.testing.assert_allclose(packed, padded, rtol=0.05, atol=0.05)  # bfloat16 rounding differs between the batch layouts, a little
    assert np.linalg.norm(packed - full) / np.linalg.norm(full) < 0.05
    [(batch, states)] = list(extract_tokens(half, prompts, 2, shared_prefix=[5, 6], progress=False))
    assert sorted(batch) == [0, 1, 2] and [len(s) for s in states] == [len(prompts[i]) - 2 for i in batch]


def test_the_app_worker_serves_another_precision_from_the_same_process(folder_model_registry, monkeypatch):
    """The app's model worker (a real child process) loaded in bfloat16 answers float32 requests from a float32 load of the same weights."""
    from space_app.model_worker import ModelWorker

    model, _ = folder_model_registry
    monkeypatch.setenv("PROBES_HUB_DTYPE", "bfloat16")
    worker = ModelWorker(str(model))
    try:
        assert worker.dtype == "bfloat16" and worker.status()["state"] == "ready"
        full = worker.in_dtype("float32")
        assert full.dtype == "float32" and weights_fingerprint(full.fingerprint) == weights_fingerprint(worker.fingerprint)
        questions = [" ".join(WORDS[:7]), " ".join(WORDS[2:14])]
        expected = ModelFeatures(load_model(str(model), dtype="float32")).features(questions, [2])[0].activations
        np.testing.assert_array_equal(full.features(questions, [2])[0].activations, expected)
        assert not np.array_equal(worker.features(questions, [2])[0].activations, expected)  # its own requests stay in bfloat16
    finally:
        worker.close()
