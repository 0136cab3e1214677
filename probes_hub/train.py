"""The training pipeline: dataset + model -> features -> fitted, calibrated, evaluated probes + reports.

Row roles are fixed before anything is fitted: the dataset's test split is only ever predicted; for
binary labels a seeded 20% of the training questions is held out for Platt calibration (the same questions
for every label, so many labels share one sweep), and the remaining rows are the only ones used for
fitting and for the CV selection of layer, position and regularization.

Many labels of one dataset (e.g. the 29 MMLU-Pro success labels) train in one call: activations are
extracted once, and labels known on the same rows share the linear sweep's decompositions.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import BINARY, CALIBRATION_FRACTION, QuestionSet, load_dataset, row_roles
from .feature_source import ModelFeatures
from .features import Features
from .metrics import Metric, ece_metric, headline_metric, mae_metric
from .models import LoadedModel, load_model
from .naming import probe_folder_name
from .prompts import PromptFormat, eoi_tokens, prompt_format
from .probes import PROBE_TYPES, LinearProbe, Probe
from .progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """Everything ``train`` needs; the CLI maps its flags onto these fields."""

    model: str | None = None
    dataset: str = "math500"
    labels: tuple[str, ...] = ("level",)
    probes: tuple[str, ...] = ("linear",)
    out: str = "runs"
    data_dir: str | None = None
    limit: int | None = None
    layers: tuple[int, ...] | None = None
    max_length: int = 1024
    chat: bool = True
    cv_folds: int = 5
    seed: int = 0
    use_cache: bool = True
    progress: bool = True
    question_column: str = "question"
    label_columns: tuple[str, ...] = ()


@dataclass
class TrainedProbe:
    """One fitted probe, its test metrics and where it was saved."""

    probe: Probe
    metrics: dict[str, Metric]
    path: Path | None = None
    test_predictions: np.ndarray | None = None


@dataclass
class TrainResult:
    probes: dict[str, TrainedProbe] = field(default_factory=dict)
    baselines: dict[str, TrainedProbe] = field(default_factory=dict)


def build_features(lm: LoadedModel, fmt: PromptFormat, dataset: QuestionSet, layers: list[int], *, max_length: int,
                   use_cache: bool = True, progress: bool = True) -> Features:
    """Features for every row of ``dataset``: templated token counts plus activations at ``layers`` x EOI positions."""
    features, truncated = ModelFeatures(lm).features(dataset.frame["question"].tolist(), layers, chat=fmt.mode == "chat", max_length=max_length,
                                                     data_hash=dataset.content_hash, use_cache=use_cache, progress=progress)
    if any(truncated):
        logger.warning("%d question(s) longer than max_length=%d were cut from the left (EOI tokens kept).", sum(truncated), max_length)
    return features


def resolve_labels(dataset: QuestionSet, patterns: tuple[str, ...]) -> list[str]:
    """Label names from names or shell-style patterns (``'correct:*'``), in dataset order; unknown ones are an error."""
    labels: list[str] = []
    for pattern in patterns:
        matches = [name for name in dataset.labels if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise ValueError(f"Label {pattern!r} matches none of {dataset.name}'s labels: {', '.join(dataset.labels)}.")
        labels += [m for m in matches if m not in labels]
    return labels


def evaluate(probe: Probe, features: Features, y: np.ndarray) -> tuple[dict[str, Metric], np.ndarray]:
    """Test metrics: the headline metric with CI, plus MAE (graded) or ECE before/after calibration (binary)."""
    prediction = probe.predict(features)
    metrics = {"test": headline_metric(probe.task, y, prediction)}
    if probe.task == "graded":
        metrics["test_mae"] = mae_metric(y, prediction)
    else:
        metrics["test_ece_uncalibrated"] = ece_metric(y, probe.predict_uncalibrated(features))
        metrics["test_ece"] = ece_metric(y, prediction)
    return metrics, prediction


def train(options: TrainOptions, *, lm: LoadedModel | None = None) -> dict[str, TrainResult]:
    """Train, select, calibrate, evaluate and save the requested probes for every requested label.

    Baselines are always evaluated. Returns ``{label: TrainResult}``; each requested probe is saved under
    ``options.out`` in a folder named after model, dataset, label and probe type.
    """
    unknown = [p for p in options.probes if p not in PROBE_TYPES]
    if unknown:
        raise ValueError(f"Unknown probe type(s) {unknown}; choose from {sorted(PROBE_TYPES)}.")
    dataset = load_dataset(options.dataset, data_dir_override=options.data_dir, label_columns=list(options.label_columns) or None,
                           question_column=options.question_column).subset(options.limit, seed=options.seed)
    labels = resolve_labels(dataset, options.labels)
    for probe_type in options.probes:
        if not any(dataset.task(label) in PROBE_TYPES[probe_type].tasks for label in labels):
            raise ValueError(f"'{probe_type}' probes learn {' or '.join(PROBE_TYPES[probe_type].tasks)} labels; none of {labels} is one.")
    lm = lm or load_model(options.model)
    fmt = prompt_format(lm.tokenizer, chat=options.chat)
    layers = list(options.layers) if options.layers else list(range(lm.n_layers))
    activation_probes = [p for p in options.probes if issubclass(PROBE_TYPES[p], LinearProbe)]
    features = build_features(lm, fmt, dataset, layers if activation_probes else [],
                              max_length=options.max_length, use_cache=options.use_cache, progress=options.progress)
    roles = {label: row_roles(dataset, label, seed=options.seed) for label in labels}
    for label, role in roles.items():
        if len(role["fit"]) < 2 * options.cv_folds or len(role["test"]) < 2:
            raise ValueError(f"Too few labelled rows for '{label}': fit={len(role['fit'])}, test={len(role['test'])}.")
    fitted = {probe_type: _fit_activation_probes(probe_type, dataset, labels, roles, features, options) for probe_type in activation_probes}
    return {label: _train_label(lm, fmt, dataset, label, roles[label], features, options,
                                {probe_type: probes[label] for probe_type, probes in fitted.items() if label in probes})
            for label in progress_bar(labels, desc="labels", unit="label", disable=not options.progress or len(labels) == 1)}


def _fit_activation_probes(probe_type: str, dataset: QuestionSet, labels: list[str], roles: dict, features: Features,
                           options: TrainOptions) -> dict[str, LinearProbe]:
    """Linear (or shared-direction) probes for all labels; labels of one task known on the same fit rows share one sweep."""
    groups: dict[tuple, list[str]] = {}
    for label in labels:
        groups.setdefault((dataset.task(label), tuple(roles[label]["fit"])), []).append(label)
    fitted = {}
    for (task, rows), group in groups.items():
        rows = np.array(rows)
        Y = dataset.frame[group].to_numpy(dtype=float)[rows]
        if task not in PROBE_TYPES[probe_type].tasks:
            continue
        fitted.update(zip(group, _make_probe(probe_type, task, options).fit_many(features.take(rows), Y)))
    return fitted


def _train_label(lm, fmt, dataset: QuestionSet, label: str, roles: dict, features: Features, options: TrainOptions,
                 prefitted: dict[str, LinearProbe]) -> TrainResult:
    """Fit (unless given in ``prefitted``), calibrate, evaluate and save every probe type for one label."""
    task = dataset.task(label)
    y = dataset.frame[label].to_numpy(dtype=float)
    parts = {name: features.take(rows) for name, rows in roles.items()}
    targets = {name: y[rows] for name, rows in roles.items()}
    result = TrainResult()
    probe_types = [p for p in dict.fromkeys(("length", "tfidf", *options.probes)) if task in PROBE_TYPES[p].tasks]
    for probe_type in probe_types:
        probe = prefitted[probe_type] if probe_type in prefitted else _make_probe(probe_type, task, options).fit(parts["fit"], targets["fit"])
        if task == BINARY:
            probe.fit_calibration(parts["calibration"], targets["calibration"],
                                  note=f"Platt scaling on a held-out {CALIBRATION_FRACTION:.0%} of the training questions (n={len(roles['calibration'])}), unused for fitting and selection")
        metrics, prediction = evaluate(probe, parts["test"], targets["test"])
        trained = TrainedProbe(probe, metrics, test_predictions=prediction)
        (result.probes if probe_type in options.probes else result.baselines)[probe_type] = trained
    baseline_metrics = {f"baseline_{name}": t.metrics["test"] for name, t in {**result.baselines, **result.probes}.items() if name in ("length", "tfidf")}
    for probe_type, trained in result.probes.items():
        trained.probe.info = _record(lm, fmt, dataset, options, label, task, y, roles, {**trained.metrics, **baseline_metrics})
        reports = _reports(trained, dataset, roles, y, parts) if isinstance(trained.probe, LinearProbe) else _prediction_reports(trained, dataset, roles, y, parts)
        folder = Path(options.out) / probe_folder_name(lm.display_id, dataset.name, label, probe_type)
        trained.path = trained.probe.save_pretrained(folder, reports=reports)
    return result


def _make_probe(probe_type: str, task: str, options: TrainOptions) -> Probe:
    cls = PROBE_TYPES[probe_type]
    if probe_type == "length":
        return cls(task=task)
    return cls(task=task, cv_folds=options.cv_folds, seed=options.seed)


def _record(lm, fmt, dataset, options, label, task, y, roles, metrics) -> dict:
    """The facts a probe's config.json records about how it was made."""
    labelled = y[np.isfinite(y)]
    return {
        "model": {"fingerprint": lm.fingerprint, "display_id": lm.display_id, "hidden_size": lm.hidden_size, "n_layers": lm.n_layers,
                  "prompt": {"mode": fmt.mode, "template_hash": fmt.template_hash, "eoi_tokens": eoi_tokens(fmt, lm.tokenizer),
                             "eoi_positions": fmt.eoi_positions, "max_length": options.max_length}},
        "label": {"name": label, "task": task, "range": [float(labelled.min()), float(labelled.max())]},
        "data": {"dataset": dataset.name, "source": dataset.source, "split_rule": dataset.split_rule, "content_hash": dataset.content_hash,
                 "limit": options.limit, "seed": options.seed, "n_train": int(len(roles["fit"]) + len(roles["calibration"])),
                 "n_fit": int(len(roles["fit"])), "n_calibration": int(len(roles["calibration"])), "n_test": int(len(roles["test"]))},
        "metrics": {k: m.to_dict() for k, m in metrics.items()},
        "selection": {},
    }


def _prediction_reports(trained: TrainedProbe, dataset, roles, y, parts) -> dict[str, str]:
    """predictions.json: the probe's predictions on its fit/calibration/test rows (for exact reproduction checks)."""
    ids = dataset.frame["id"].to_numpy()
    rows = []
    for role in ("fit", "calibration", "test"):
        if len(roles[role]):
            prediction = trained.probe.predict(parts[role])
            rows += [{"id": str(i), "role": role, "label": float(t), "prediction": float(p)} for i, t, p in zip(ids[roles[role]], y[roles[role]], prediction)]
    return {"predictions.json": json.dumps({"rows": rows}, separators=(",", ":"))}


def _reports(trained: TrainedProbe, dataset, roles, y, parts) -> dict[str, str]:
    """Sweep table (CV and test score per layer x position, JSON + CSV), predictions, all probes' test predictions."""
    probe: LinearProbe = trained.probe  # type: ignore[assignment]
    sweep = probe.sweep_
    best_alpha = sweep.best_alpha_index()
    test_predictions = probe.cells_.predict(parts["test"].activations)  # [L, P, m], each cell at its CV-best alpha
    targets = y[roles["test"]]
    table = []
    for li, layer in enumerate(sweep.layers):
        for pi, position in enumerate(sweep.positions):
            ai = best_alpha[li, pi]
            test = headline_metric(probe.task, targets, test_predictions[li, pi])
            table.append({"layer": layer, "position": position, "alpha": sweep.alphas[ai], "cv_metric": sweep.metric,
                          "cv_score": float(sweep.cv_scores[li, pi, ai]), "test_score": test.value, "test_low": test.low, "test_high": test.high,
                          "test_n": test.n, "selected": (li, pi, ai) == sweep.best})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    ids = dataset.frame["id"].to_numpy()[roles["test"]].tolist()
    all_test = {"note": "Test predictions of each (layer, position) probe at its CV-best alpha; reported, never used for selection.",
                "layers": list(sweep.layers), "positions": list(sweep.positions), "ids": ids,
                "predictions": np.round(test_predictions, 4).tolist()}
    return {"sweep.json": json.dumps({"metric": sweep.metric, "rows": table}, indent=1), "sweep.csv": buffer.getvalue(),
            "all_test_predictions.json": json.dumps(all_test), **_prediction_reports(trained, dataset, roles, y, parts)}
