"""The bundled registry in the current format: compact, and every probe reproduces the predictions saved when it was trained."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from probes_hub.apply import predict_probes
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
        test_ids = sorted(set.intersection(*(set(s.index[s["role"] == "test"]) for s in saved.values())))
        sample = [test_ids[i] for i in np.random.default_rng(0).choice(len(test_ids), size=min(SAMPLE, len(test_ids)), replace=False)]
        rows = [ids.index(i) for i in sample]
        questions = dataset.frame["question"].iloc[rows].tolist()
        predicted = predict_probes(source, {n: loaded.probes[n] for n in names}, questions)
        for name in names:
            expected = saved[name].loc[sample, "prediction"].to_numpy()
            assert np.max(np.abs(predicted[name] - expected)) == 0, name
            checked += 1
        text_only = {n: loaded.probes[n] for n in names if not loaded.probes[n].model_bound}
        for name, probe in text_only.items():
            test = saved[name][saved[name]["role"] == "test"]
            features, _ = source.features(dataset.frame["question"].iloc[[ids.index(i) for i in test.index]].tolist(), [])
            assert np.max(np.abs(probe.predict(features) - test["prediction"].to_numpy())) == 0, name
    assert checked == len(loaded.probes) == 125
