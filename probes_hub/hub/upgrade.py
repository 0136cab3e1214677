"""Rewrite a local registry's probe folders in the current format, leaving every prediction unchanged.

Older folders keep the TF-IDF vocabulary inside ``config.json`` and per-row predictions as JSON
(``reports/predictions.json``); the current format keeps both in safetensors. Reports that no code reads
(``all_test_predictions.json``, ``sweep.json``, which duplicates ``sweep.csv``) are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probes_hub.constants import PREDICTIONS_REPORT, REPORTS_DIR, ROLES, SWEEP_REPORT
from probes_hub.hub.registry import Registry, write_index
from probes_hub.hub.reports import encode_predictions
from probes_hub.probes import Probe
from probes_hub.progress import progress_bar
from probes_hub.schema.validation import read_json

LEGACY_PREDICTIONS = "predictions.json"


def upgrade_registry(root: str | Path, *, data_dir: str | None = None) -> list[str]:
    """Re-save every probe of the registry at ``root`` in the current format and re-index it; returns the names rewritten.

    Activation probes saved before they kept a summary of their training activations get it, from the
    training rows' activations (the model is loaded and the activation cache used only when one is needed).
    """
    root = Path(root)
    registry = Registry(root)
    names, sources, features = [], {}, {}
    with registry.writing("upgrade"):
        for entry in progress_bar(registry.list(), desc="upgrade", unit="probe"):
            folder = root / entry.folder
            probe = Probe.from_pretrained(folder)
            if probe.reads_activations and getattr(probe, "ood_quantiles_", None) is None:
                _add_training_summary(probe, sources, features, data_dir)
            probe.save_pretrained(folder, reports=current_reports(probe, folder / REPORTS_DIR, data_dir))
            names.append(entry.name)
        write_index(root)
    return names


def _add_training_summary(probe: Probe, sources: dict, extracted: dict, data_dir: str | None) -> None:
    """The quantiles of the training (fit) rows' distances, recomputed from their activations at the probe's cell.

    ``sources`` and ``extracted`` memoize models and features across the probes of one registry.
    """
    from probes_hub.apply import source_for_probe
    from probes_hub.data.datasets import row_roles, training_dataset

    data = probe.record_.data
    dataset = training_dataset(probe.record_.data, [probe.record_.label.name], data_dir=data_dir)
    source = sources.get(probe.fingerprint) or sources.setdefault(probe.fingerprint, source_for_probe(probe))
    fit = row_roles(dataset, probe.record_.label.name, seed=data.seed)["fit"]
    prompt = probe.record_.model.prompt
    layers = tuple(sorted({probe.layer, *probe.selection_.layers_searched}))
    key = (probe.fingerprint, dataset.content_hash, layers, prompt.mode, prompt.max_length)
    if key not in extracted:
        extracted[key] = source.features(dataset.frame["question"].tolist(), list(layers), chat=prompt.mode == "chat", max_length=prompt.max_length,
                                         data_hash=dataset.content_hash, use_cache=True)[0]
    probe.summarize_training(extracted[key].at(probe.layer, probe.position)[fit])


def current_reports(probe: Probe, reports: Path, data_dir: str | None) -> dict[str, str | bytes]:
    """The reports a current-format folder keeps: the sweep table and the per-row predictions (converted if needed)."""
    kept: dict[str, str | bytes] = {}
    if (reports / SWEEP_REPORT).exists():
        kept[SWEEP_REPORT] = (reports / SWEEP_REPORT).read_bytes()  # as written (line endings included)
    if (reports / PREDICTIONS_REPORT).exists():
        kept[PREDICTIONS_REPORT] = (reports / PREDICTIONS_REPORT).read_bytes()
    elif (reports / LEGACY_PREDICTIONS).exists():
        kept[PREDICTIONS_REPORT] = _convert_predictions(probe, reports / LEGACY_PREDICTIONS, data_dir)
    return kept


def _convert_predictions(probe: Probe, path: Path, data_dir: str | None) -> bytes:
    """``predictions.json`` rows (id, role, prediction) as the dataset-ordered arrays of ``predictions.safetensors``."""
    from probes_hub.data.datasets import training_dataset

    dataset = training_dataset(probe.record_.data, [probe.record_.label.name], data_dir=data_dir)
    index = {str(i): row for row, i in enumerate(dataset.frame["id"])}
    prediction = np.full(len(index), np.nan)
    role = np.full(len(index), len(ROLES) - 1, dtype=np.uint8)
    for row in read_json(path)["rows"]:
        prediction[index[row["id"]]] = row["prediction"]
        role[index[row["id"]]] = ROLES.index(row["role"])
    return encode_predictions(prediction, role)
