"""Probe folders: save -> load round trip for every probe type, and clear rejection of bad folders."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from probes_hub.data.datasets import load_dataset
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.prompts import prompt_format
from probes_hub.paths import BUNDLED_REGISTRY
from probes_hub.probes import Probe
from probes_hub.schema.validation import ProbeValidationError
from probes_hub.train import build_features

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def trained(toy_probes):
    data, results, _ = toy_probes
    return data, results


@pytest.mark.parametrize("label", ["difficulty", "solved"])
@pytest.mark.parametrize("probe_type", ["linear", "length", "tfidf"])
def test_round_trip_gives_identical_params_weights_and_predictions(tiny, trained, label, probe_type):
    data, results = trained
    fitted = results[label].probes[probe_type]
    loaded = Probe.from_pretrained(fitted.path, hidden_size=tiny.hidden_size)
    assert type(loaded) is type(fitted.probe) and loaded.get_params() == fitted.probe.get_params()
    for name in fitted.probe.array_names:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fitted.probe, name))
    assert loaded.calibration_ == fitted.probe.calibration_
    if probe_type == "linear":  # the training-distance summary behind the in-distribution score travels with the weights
        np.testing.assert_array_equal(loaded.ood_quantiles_, fitted.probe.ood_quantiles_)
    dataset = load_dataset(str(data), label_columns=["difficulty", "solved"])
    layers = list(range(tiny.n_layers)) if probe_type == "linear" else []
    features = build_features(ModelFeatures(tiny), prompt_format(tiny.tokenizer).mode == "chat", dataset, layers, max_length=1024, progress=False)
    test = features.take(dataset.frame["split"].to_numpy() == "test")
    np.testing.assert_allclose(loaded.predict(test), fitted.test_predictions, rtol=0, atol=1e-12)


def test_config_records_what_the_product_needs(trained):
    _, results = trained
    config = json.loads((results["solved"].probes["linear"].path / "config.json").read_text())
    assert config["label"] == {"name": "solved", "task": "binary", "range": [0.0, 1.0]}
    assert config["model"]["hidden_size"] == 32 and config["model"]["prompt"]["eoi_tokens"][-2:] == ["model", "\n"]
    assert config["calibration"]["method"] == "platt" and "held-out" in config["calibration"]["fitted_on"]
    metrics = config["metrics"]
    assert {"test", "test_ece", "test_ece_uncalibrated", "baseline_length", "baseline_tfidf"} <= set(metrics)
    assert metrics["test"]["n"] == config["data"]["n_test"] and metrics["test"]["low"] <= metrics["test"]["high"]
    assert config["data"]["n_fit"] + config["data"]["n_calibration"] == config["data"]["n_train"]
    folder = results["solved"].probes["linear"].path
    assert (folder / "README.md").read_text().startswith("---\n") and (folder / "reports" / "sweep.csv").exists()


def _copy(results, tmp_path):
    source = results["difficulty"].probes["linear"].path
    target = tmp_path / "probe"
    shutil.copytree(source, target)
    return target


def test_hidden_size_mismatch_is_rejected(trained, tmp_path):
    folder = _copy(trained[1], tmp_path)
    with pytest.raises(ProbeValidationError, match="hidden size 32.*hidden size 576"):
        Probe.from_pretrained(folder, hidden_size=576)


def test_missing_config_field_is_rejected(trained, tmp_path):
    folder = _copy(trained[1], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["label"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ProbeValidationError, match=r"missing field\(s\) \['label'\]"):
        Probe.from_pretrained(folder)


@pytest.mark.parametrize("bad_name", ["model.pkl", "pytorch_model.pt", "weights.joblib"])
def test_pickle_or_torch_files_are_rejected(trained, tmp_path, bad_name):
    folder = _copy(trained[1], tmp_path)
    (folder / "model.safetensors").rename(folder / bad_name)
    with pytest.raises(ProbeValidationError, match="never loaded"):
        Probe.from_pretrained(folder)


def test_wrong_array_shape_and_corrupt_weights_are_rejected(trained, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = _copy(trained[1], tmp_path)
    arrays = load_file(str(folder / "model.safetensors"))
    arrays["coef_"] = arrays["coef_"][:-1]
    save_file(arrays, str(folder / "model.safetensors"))
    with pytest.raises(ProbeValidationError, match="coef_.*shape"):
        Probe.from_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ProbeValidationError, match="not a readable safetensors"):
        Probe.from_pretrained(folder)


def test_failed_save_leaves_previous_probe_untouched(trained, tmp_path):
    folder = _copy(trained[1], tmp_path)
    before = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    probe = Probe.from_pretrained(folder)
    probe.coef_ = np.full_like(probe.coef_, np.nan)  # saving validates, and NaN weights must not land
    with pytest.raises(ProbeValidationError, match="NaN"):
        probe.save_pretrained(folder)
    after = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == ["probe"]


@pytest.mark.parametrize("kind", ["tfidf", "length"])
def test_schema_version_1_folders_load_and_predict_like_their_upgraded_copies(kind, tmp_path):
    """Real version-1 folders (TF-IDF vocabulary inside config.json) load, and re-saving them changes no prediction."""
    from probes_hub.data.datasets import load_dataset
    from probes_hub.extract.features import Features

    old = Probe.from_pretrained(FIXTURES / "schema_v1" / f"smollm2-135m-instruct--math500--level--{kind}")
    assert old.record_.model.hidden_size == 576 and old.record_.test_metric.n == 200
    upgraded = Probe.from_pretrained(old.save_pretrained(tmp_path / kind))
    assert json.loads((tmp_path / kind / "config.json").read_text())["schema_version"] == 2
    questions = load_dataset("math500").frame["question"].tolist()[:50]
    features = Features(questions, np.array([len(q) // 3 + 20 for q in questions]))  # the length probe reads token counts
    np.testing.assert_array_equal(upgraded.predict(features), old.predict(features))
    assert upgraded.record_ == old.record_ and upgraded.selection_ == old.selection_
    bundled = BUNDLED_REGISTRY / f"smollm2-135m-instruct--math500--level--{kind}"
    if bundled.exists():  # the bundled probe was retrained on the same rows and seed (TF-IDF weights now kept in float32)
        np.testing.assert_allclose(Probe.from_pretrained(bundled).predict(features), old.predict(features), rtol=1e-6)


@pytest.mark.parametrize("task", ["graded", "binary"])
def test_embedding_probe_round_trip_on_bare_text(task, trained, tmp_path):
    """The sentence-embedding baseline needs no LLM: fitted on bare text, it saves with model null and loads anywhere."""
    from probes_hub.extract.features import Features
    from probes_hub.probes import EmbeddingProbe

    data, results = trained
    frame = load_dataset(str(data), label_columns=["difficulty", "solved"]).frame
    label = "difficulty" if task == "graded" else "solved"
    features = Features(frame["question"].tolist(), np.zeros(len(frame)))
    probe = EmbeddingProbe(task=task, cv_folds=3).fit(features, frame[label])
    loaded = Probe.from_pretrained(probe.save_pretrained(tmp_path / "embedding"))
    assert json.loads((tmp_path / "embedding" / "config.json").read_text())["model"] is None and loaded.record_.label.name == label
    np.testing.assert_array_equal(loaded.predict(features), probe.predict(features))
    assert "embedding" in results[label].baselines  # train evaluates it beside length and TF-IDF
