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
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes_hub.constants import MAX_PROMPT_TOKENS, PREDICTIONS_REPORT, ROLES, SWEEP_REPORT
from probes_hub.data.datasets import BINARY, CALIBRATION_FRACTION, QuestionSet, load_dataset, row_roles
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.extract.features import Features
from probes_hub.extract.models import LoadedModel
from probes_hub.extract.paired import model_source
from probes_hub.hub.reports import encode_predictions
from probes_hub.metrics import Metric, ece_metric, headline_metric, mae_metric, partial_spearman_metric
from probes_hub.probes import PROBE_TYPES, Probe, baseline_types
from probes_hub.progress import progress_bar
from probes_hub.schema.naming import probe_folder_name
from probes_hub.schema.records import DataInfo, LabelInfo, ProbeRecord

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
    token_layer: int | None = None
    """Layer whose every-token activations attention probes read (default: the layer the linear sweep picks on the fit rows)."""
    max_length: int = MAX_PROMPT_TOKENS
    chat: bool | None = None
    """Chat template (True) or the raw question/answer prompt (False); None: the model's own default (``LoadedModel.chat``)."""
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


def build_features(source: FeatureSource, chat: bool | None, dataset: QuestionSet, layers: list[int], *, max_length: int,
                   use_cache: bool = True, progress: bool = True) -> Features:
    """Features for every row of ``dataset``: templated token counts plus activations at ``layers`` x EOI positions (``chat``:
    the chat template or the raw prompt; None: the model's default)."""
    features, truncated = source.features(dataset.frame["question"].tolist(), layers, chat=chat, max_length=max_length,
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
    """Test metrics: the headline metric with CI, plus MAE and the partial Spearman given prompt length (graded) or ECE
    before/after calibration (binary)."""
    prediction = probe.predict(features)
    metrics = {"test": headline_metric(probe.task, y, prediction)}
    if probe.task == "graded":
        metrics["test_mae"] = mae_metric(y, prediction)
        metrics["test_partial_length"] = partial_spearman_metric(y, prediction, features.token_counts)
    else:
        metrics["test_ece_uncalibrated"] = ece_metric(y, probe.predict_uncalibrated(features))
        metrics["test_ece"] = ece_metric(y, prediction)
    return metrics, prediction


def train(options: TrainOptions, *, lm: LoadedModel | FeatureSource | None = None) -> dict[str, TrainResult]:
    """Train, select, calibrate, evaluate and save the requested probes for every requested label.

    Baselines are always evaluated. Returns ``{label: TrainResult}``; each requested probe is saved under
    ``options.out`` in a folder named after model, dataset, label and probe type. ``lm``: a loaded model or a feature source
    (e.g. a pair of models); default ``options.model`` (``"a+b"`` for two models read together).
    """
    unknown = [p for p in options.probes if p not in PROBE_TYPES]
    if unknown:
        raise ValueError(f"Unknown probe type(s) {unknown}; choose from {sorted(PROBE_TYPES)}.")
    dataset = load_dataset(options.dataset, data_dir=options.data_dir, label_columns=list(options.label_columns) or None,
                           question_column=options.question_column).subset(options.limit, seed=options.seed)
    labels = resolve_labels(dataset, options.labels)
    for probe_type in options.probes:
        if not any(dataset.task(label) in PROBE_TYPES[probe_type].tasks for label in labels):
            raise ValueError(f"'{probe_type}' probes learn {' or '.join(PROBE_TYPES[probe_type].tasks)} labels; none of {labels} is one.")
    source = model_source(lm if lm is not None else options.model)
    layers = list(options.layers) if options.layers else list(range(source.n_layers))
    activation_probes = [p for p in options.probes if PROBE_TYPES[p].reads_activations]
    features = build_features(source, options.chat, dataset, layers if activation_probes else [],
                              max_length=options.max_length, use_cache=options.use_cache, progress=options.progress)
    roles = {label: row_roles(dataset, label, seed=options.seed) for label in labels}
    for label, role in roles.items():
        if len(role["fit"]) < 2 * options.cv_folds or len(role["test"]) < 2:
            raise ValueError(f"Too few labelled rows for '{label}': fit={len(role['fit'])}, test={len(role['test'])}.")
    if any(PROBE_TYPES[p].reads_tokens for p in options.probes):
        layer = options.token_layer if options.token_layer is not None else sweep_layer(dataset, labels[0], roles[labels[0]], features, options)
        features.tokens = source.features(dataset.frame["question"].tolist(), [], chat=options.chat, max_length=options.max_length,
                                          data_hash=dataset.content_hash, use_cache=options.use_cache, progress=options.progress,
                                          token_layers=[layer])[0].tokens
    fitted = {probe_type: _fit_many_labels(probe_type, dataset, labels, roles, features, options) for probe_type in activation_probes}
    return {label: _train_label(dataset, label, roles[label], features, options,
                                {probe_type: probes[label] for probe_type, probes in fitted.items() if label in probes})
            for label in progress_bar(labels, desc="labels", unit="label", disable=not options.progress or len(labels) == 1)}


def sweep_layer(dataset: QuestionSet, label: str, roles: dict, features: Features, options: TrainOptions) -> int:
    """The layer the linear probes' k-fold CV sweep picks for ``label`` on its fit rows (where attention probes read every token)."""
    from probes_hub.probes.linear import sweep

    rows = roles["fit"]
    result = sweep(features.activations[rows], dataset.frame[label].to_numpy(dtype=float)[rows], task=dataset.task(label), layers=features.layers,
                   positions=features.positions, folds=options.cv_folds, seed=options.seed)
    layer = int(features.layers[result.best[0]])
    logger.info("Attention probes read layer %d (the linear sweep's CV choice for %s)", layer, label)
    return layer


def _fit_many_labels(probe_type: str, dataset: QuestionSet, labels: list[str], roles: dict, features: Features,
                     options: TrainOptions) -> dict[str, Probe]:
    """Probes of one type for all labels; labels of one task known on the same fit rows are fitted together (``fit_many``)."""
    if PROBE_TYPES[probe_type].joint_fit:
        return _fit_jointly(probe_type, dataset, [label for label in labels if dataset.task(label) in PROBE_TYPES[probe_type].tasks], roles, features, options)
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


def _fit_jointly(probe_type: str, dataset: QuestionSet, labels: list[str], roles: dict, features: Features, options: TrainOptions) -> dict[str, Probe]:
    """Shared-direction probes: the direction learns the logit of success over *every* success label of the dataset on all fit
    rows (not only the requested labels'), each requested label its offset on its own fit rows; then one joint
    calibration on the held-out calibration rows."""
    from probes_hub.probes.shared import calibrate_jointly, success_logit

    if not labels:
        return {}
    everyone = [name for name, task in dataset.labels.items() if task == BINARY]
    everyone_roles = {name: roles.get(name) or row_roles(dataset, name, seed=options.seed) for name in everyone}
    table = dataset.frame[labels].to_numpy(dtype=float)

    def known_on(role: str, names: list[str], source: dict) -> tuple[np.ndarray, np.ndarray]:
        rows = np.unique(np.concatenate([source[name][role] for name in names]))
        Y = np.full((len(rows), len(labels)), np.nan)
        for t, label in enumerate(labels):
            mine = np.isin(rows, roles[label][role])
            Y[mine, t] = table[rows[mine], t]
        return rows, Y

    fit_rows, Y_fit = known_on("fit", everyone, everyone_roles)
    target = success_logit(dataset.frame[everyone].to_numpy(dtype=float)[fit_rows])
    probes = _make_probe(probe_type, BINARY, options).fit_many(features.take(fit_rows), Y_fit, direction_target=target)
    calibration_rows, Y_calibration = known_on("calibration", labels, roles)
    calibrate_jointly(probes, features.take(calibration_rows), Y_calibration,
                      note=f"one slope and a per-label offset on a held-out {CALIBRATION_FRACTION:.0%} of the training questions "
                           f"(n={len(calibration_rows)} over {len(labels)} labels), unused for fitting and selection")
    return dict(zip(labels, probes))


def _train_label(dataset: QuestionSet, label: str, roles: dict, features: Features, options: TrainOptions,
                 prefitted: dict[str, Probe]) -> TrainResult:
    """Fit (unless given in ``prefitted``), calibrate, evaluate and save every probe type for one label."""
    task = dataset.task(label)
    y = dataset.frame[label].to_numpy(dtype=float)
    parts = {name: features.take(rows) for name, rows in roles.items()}
    targets = {name: y[rows] for name, rows in roles.items()}
    result = TrainResult()
    probe_types = [p for p in dict.fromkeys((*baseline_types(), *options.probes)) if task in PROBE_TYPES[p].tasks]
    for probe_type in probe_types:
        probe = prefitted[probe_type] if probe_type in prefitted else _make_probe(probe_type, task, options).fit(parts["fit"], targets["fit"])
        if task == BINARY and probe.calibration_ is None:
            probe.fit_calibration(parts["calibration"], targets["calibration"],
                                  note=f"Platt scaling on a held-out {CALIBRATION_FRACTION:.0%} of the training questions (n={len(roles['calibration'])}), unused for fitting and selection")
        metrics, prediction = evaluate(probe, parts["test"], targets["test"])
        trained = TrainedProbe(probe, metrics, test_predictions=prediction)
        (result.probes if probe_type in options.probes else result.baselines)[probe_type] = trained
    baseline_metrics = {f"baseline_{name}": t.metrics["test"] for name, t in {**result.baselines, **result.probes}.items() if PROBE_TYPES[name].is_baseline}
    for probe_type, trained in result.probes.items():
        trained.probe.record_ = _record(features, dataset, options, label, task, y, roles, {**trained.metrics, **baseline_metrics})
        reports = {PREDICTIONS_REPORT: _predictions_report(trained.probe, parts, roles, len(y))}
        sweep = trained.probe.sweep_report(parts["test"], targets["test"])
        if sweep:
            reports[SWEEP_REPORT] = report_csv(sweep)
        folder = Path(options.out) / probe_folder_name(features.model.display_id, dataset.name, label, probe_type)
        trained.path = trained.probe.save_pretrained(folder, reports=reports)
    return result


def _make_probe(probe_type: str, task: str, options: TrainOptions) -> Probe:
    return PROBE_TYPES[probe_type].for_training(task, cv_folds=options.cv_folds, seed=options.seed)


def _record(features: Features, dataset: QuestionSet, options: TrainOptions, label: str, task: str, y: np.ndarray, roles: dict,
            metrics: dict[str, Metric]) -> ProbeRecord:
    """The facts a probe's config.json records about how it was made."""
    labelled = y[np.isfinite(y)]
    data = DataInfo(dataset=dataset.name, source=dataset.source, split_rule=dataset.split_rule, content_hash=dataset.content_hash,
                    limit=options.limit, seed=options.seed, n_train=int(len(roles["fit"]) + len(roles["calibration"])),
                    n_fit=int(len(roles["fit"])), n_calibration=int(len(roles["calibration"])), n_test=int(len(roles["test"])))
    return ProbeRecord(label=LabelInfo(label, task, (float(labelled.min()), float(labelled.max()))), data=data, model=features.model,
                       metrics=metrics)


def _predictions_report(probe: Probe, parts: dict[str, Features], roles: dict[str, np.ndarray], n_rows: int) -> bytes:
    """The probe's prediction for every dataset row it saw (fit, calibration, test), in dataset order."""
    prediction = np.full(n_rows, np.nan)
    role = np.full(n_rows, len(ROLES) - 1, dtype=np.uint8)
    for index, name in enumerate(ROLES[:-1]):
        if len(roles[name]):
            prediction[roles[name]] = probe.predict(parts[name])
            role[roles[name]] = index
    return encode_predictions(prediction, role)


REPORT_DIGITS = 4
"""Decimals the CSV reports keep: they are read by people and charts (the choices were made on the unrounded scores), and
full precision would make the sweep tables of a 30-layer model most of a probe folder."""


def report_csv(rows: list[dict]) -> str:
    """A report table as CSV, floats rounded to :data:`REPORT_DIGITS` decimals."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({key: round(value, REPORT_DIGITS) if isinstance(value, float) else value for key, value in row.items()} for row in rows)
    return buffer.getvalue()
