"""The bundled registry in the current format: compact, and every probe reproduces the predictions saved when it was trained."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from probes_hub.apply import predict_probes
from probes_hub.bundled import BUNDLED_LAYERS
from probes_hub.data.datasets import load_dataset
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.hub.registry import Registry
from probes_hub.hub.reports import read_predictions
from probes_hub.paths import BUNDLED_REGISTRY, PROJECT_ROOT

pytestmark = pytest.mark.skipif(not (BUNDLED_REGISTRY / "manifest.json").exists(), reason="bundled registry not built")
SAMPLE = 24
"""Test questions per dataset re-extracted with the real model (all test questions for text-only probes)."""


def test_bundled_registry_is_compact_and_the_repo_tracks_no_wheels_or_archives():
    size = sum(p.stat().st_size for p in BUNDLED_REGISTRY.rglob("*") if p.is_file())
    assert size <= 30e6, f"registry/ holds {size / 1e6:.1f} MB"
    stray = [p.name for pattern in ("*.whl", "*.tar.gz", "*.zip") for p in PROJECT_ROOT.glob(pattern)]
    assert stray == []


def test_bundled_probes_reproduce_their_saved_test_predictions_exactly(smollm2):
    """Saved predictions were written by the probes as trained; re-predicting from the stored weights must give the same bits."""
    registry = Registry()
    loaded = registry.load_all()
    assert loaded.problems == {}
    by_dataset: dict[tuple, list[str]] = defaultdict(list)
    for name, probe in loaded.probes.items():
        data = probe.record_.data
        by_dataset[(data.dataset, data.limit, data.seed)].append(name)
    source = ModelFeatures(smollm2)
    checked = 0
    for (dataset_name, limit, seed), names in sorted(by_dataset.items(), key=lambda kv: kv[0][0]):
        dataset = load_dataset(dataset_name).subset(limit, seed=seed)
        ids = dataset.frame["id"].astype(str).tolist()
        saved = {name: read_predictions(Path(registry.folder(name))) for name in names}
        by_test_rows: dict[frozenset, list[str]] = defaultdict(list)  # labels known on different rows (mixed) have different test rows
        for name in names:
            by_test_rows[frozenset(saved[name].index[saved[name]["role"] == "test"])].append(name)
        for test_ids, group in by_test_rows.items():
            test_ids = sorted(test_ids)
            sample = [test_ids[i] for i in np.random.default_rng(0).choice(len(test_ids), size=min(SAMPLE, len(test_ids)), replace=False)]
            questions = dataset.frame["question"].iloc[[ids.index(i) for i in sample]].tolist()
            predicted = predict_probes(source, {n: loaded.probes[n] for n in group}, questions)
            for name in group:
                expected = saved[name].loc[sample, "prediction"].to_numpy()
                assert _same(predicted[name], expected, loaded.probes[name]), name
                checked += 1
        text_only = {n: loaded.probes[n] for n in names if not loaded.probes[n].model_bound}
        for name, probe in text_only.items():
            test = saved[name][saved[name]["role"] == "test"]
            features, _ = source.features(dataset.frame["question"].iloc[[ids.index(i) for i in test.index]].tolist(), [])
            assert _same(probe.predict(features), test["prediction"].to_numpy(), probe), name
    assert checked == len(loaded.probes) == len(registry.list())


def _same(predicted: np.ndarray, saved: np.ndarray, probe) -> bool:
    """Bit-exact for every probe but two kinds:
    - the sentence-embedding one: the encoder's float32 output moves in the last bits with the padding of the batch a question
      is encoded in (training encoded all questions together, this test a sample);
    - probes that read the deepest extracted layer (17, the multi-layer probe's window): that block's MLP runs on the kept rows
      only, and a float32 matmul over another number of rows may round differently in the last bits with 2 threads."""
    if probe.probe_type == "embedding":
        return bool(np.allclose(predicted, saved, rtol=1e-4, atol=1e-4))
    if max(probe.layers_needed(), default=-1) >= max(BUNDLED_LAYERS):
        return bool(np.allclose(predicted, saved, rtol=1e-6, atol=1e-6))
    return bool(np.max(np.abs(predicted - saved)) == 0)
