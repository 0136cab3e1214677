"""Evaluation: leave one benchmark out. Do success probes hold on questions from a source nobody trained on?

For each benchmark of ``mixed`` and each model with outcomes on it *and* on another benchmark, probes are
trained on every other benchmark's questions (both splits: the left-out benchmark is the only test) and
scored by ROC-AUC with a bootstrap 95% CI on all of the left-out benchmark's questions that model answered.
Probe types: ``shared`` (one direction for the questions' logit of success over every model of the training
benchmarks, then the model's offset), per-model ``linear``, ``stacked`` (linear, length and embedding readings combined on
out-of-fold predictions), the ``tfidf``, ``embedding`` and ``length`` baselines, and ``text_stack`` (length, TF-IDF and
embedding combined the same way: the best text-only reading). Layer, position and regularization are chosen by cross-validation inside the training
benchmarks. Ends with one line ``RESULT key=value ...`` (per left-out benchmark: the mean AUC over its
models for each probe type).

    python -m eval.lobo [--quick] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eval import add_size_options, sized
from probes_hub.bundled import SUCCESS_LAYERS
from probes_hub.data.datasets import BINARY, load_dataset
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.models import load_model
from probes_hub.metrics import auc_metric
from probes_hub.probes import PROBE_TYPES
from probes_hub.probes.shared import success_logit
from probes_hub.probes.stacked import TEXT_STACK, reading_for_training
from probes_hub.progress import progress_bar

PROBES = ("shared", "linear", "stacked", "tfidf", "embedding", "length", TEXT_STACK)
QUICK_MODELS = 6
SMOKE_QUESTIONS = 400
"""Questions of the mixed dataset (a seeded subset, splits kept) with ``--smoke``."""


def shared_models(frame, labels: list[str], left_out: str) -> list[str]:
    """Success labels known on the left-out benchmark and on at least one other."""
    inside = frame["benchmark"] == left_out
    return [label for label in labels if frame.loc[inside, label].notna().any() and frame.loc[~inside, label].notna().sum() >= 20]


def evaluate_left_out(dataset, features, left_out: str, labels: list[str], all_success: list[str]) -> dict[str, dict[str, object]]:
    """``{label: {probe type: Metric}}`` for one left-out benchmark."""
    frame = dataset.frame
    train_rows = np.flatnonzero((frame["benchmark"] != left_out).to_numpy())
    test_rows = np.flatnonzero((frame["benchmark"] == left_out).to_numpy())
    Y = frame[labels].to_numpy(dtype=float)
    results: dict[str, dict[str, object]] = {label: {} for label in labels}
    target = success_logit(frame[all_success].to_numpy(dtype=float)[train_rows])
    shared = PROBE_TYPES["shared"].for_training(BINARY).fit_many(features.take(train_rows), Y[train_rows], direction_target=target)
    linear_groups: dict[tuple, list[int]] = {}
    for t in range(len(labels)):
        known = train_rows[np.isfinite(Y[train_rows, t])]
        linear_groups.setdefault(tuple(known), []).append(t)
    linear = {}
    for rows, columns in linear_groups.items():
        rows = np.array(rows)
        linear.update(zip(columns, PROBE_TYPES["linear"].for_training(BINARY).fit_many(features.take(rows), Y[np.ix_(rows, columns)])))
    for t, label in enumerate(progress_bar(labels, desc=f"left out {left_out}", unit="model")):
        known_train = train_rows[np.isfinite(Y[train_rows, t])]
        known_test = test_rows[np.isfinite(Y[test_rows, t])]
        y_test = Y[known_test, t]
        if len(set(y_test)) < 2:
            continue
        test_features = features.take(known_test)
        fitted = {"shared": shared[t], "linear": linear[t]}
        train_features = features.take(known_train)
        for kind in ("tfidf", "embedding", "length", "stacked", TEXT_STACK):
            fitted[kind] = reading_for_training(kind, BINARY).fit(train_features, Y[known_train, t])
        for kind, probe in fitted.items():
            results[label][kind] = auc_metric(y_test, probe.decision_function(test_features))
    return {label: metrics for label, metrics in results.items() if metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.lobo", description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick=f"left-out GSM8K only, {QUICK_MODELS} models, layers 8-14 (a few minutes with a warm activation cache)",
                     smoke=f"left-out GSM8K only, 2 models, layers 8-9, a seeded {SMOKE_QUESTIONS}-question subset")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    parser.add_argument("--out", default=None, help="also write all metrics to this JSON file")
    args = parser.parse_args(argv)
    dataset = load_dataset("mixed", data_dir=args.data_dir).subset(SMOKE_QUESTIONS if args.smoke else None)
    layers = sized(args, full=list(SUCCESS_LAYERS), quick=list(range(8, 15)), smoke=[8, 9])
    features, _ = ModelFeatures(load_model()).features(dataset.frame["question"].tolist(), layers, data_hash=dataset.content_hash, use_cache=True)
    all_success = [name for name, task in dataset.labels.items() if task == BINARY]
    benchmarks = ["gsm8k"] if args.quick or args.smoke else list(dict.fromkeys(dataset.frame["benchmark"]))
    summary, everything = {}, {}
    for left_out in benchmarks:
        labels = shared_models(dataset.frame, all_success, left_out)
        labels = labels[:sized(args, full=len(labels), quick=QUICK_MODELS, smoke=2)]
        if not labels:
            print(f"{left_out}: no model with outcomes here and on another benchmark")
            continue
        results = evaluate_left_out(dataset, features, left_out, labels, all_success)
        everything[left_out] = {label: {kind: m.to_dict() for kind, m in metrics.items()} for label, metrics in results.items()}
        print(f"\n== left out {left_out}: {len(results)} model(s); ROC-AUC [95% CI] on all its questions they answered")
        print(f"{'model':40s} " + " ".join(f"{kind:>22s}" for kind in PROBES))
        for label, metrics in results.items():
            print(f"{label.removeprefix('correct:')[:40]:40s} " + " ".join(f"{_cell(metrics.get(kind)):>22s}" for kind in PROBES))
        means = {kind: float(np.mean([m[kind].value for m in results.values() if kind in m])) for kind in PROBES}
        print(f"{'mean over models':40s} " + " ".join(f"{means[kind]:>22.3f}" for kind in PROBES))
        summary.update({f"{left_out}_{kind}".replace("-", "_"): value for kind, value in means.items()})
    if args.out:
        Path(args.out).write_text(json.dumps(everything, indent=1))
    print("RESULT " + " ".join(f"{key}={value:.3f}" for key, value in summary.items()))
    return 0


def _cell(metric) -> str:
    return f"{metric.value:.3f} [{metric.low:.2f},{metric.high:.2f}]" if metric is not None else "-"


if __name__ == "__main__":
    raise SystemExit(main())
