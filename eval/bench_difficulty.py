"""Difficulty readings beyond MATH-500: the MATH-trained level probes on MATH-500 and, with no retraining, on other benchmarks.

For every model with ``level`` probes trained on ``math`` (MATH train) in the registry, and the MATH-500-only
probes as a comparison row:
- MATH-500 (all 500 for the ``math`` probes, none of which they trained on; the 200 test questions for the
  MATH-500-only ones): Spearman with the level and with the IRT difficulty from 70 models' outcomes;
- GSM8K test: Spearman with 1 - the share of its recorded models that answered correctly;
- MATH level 5 (all level 5, so only a reading finer than the level can rank them): the same, and with the IRT difficulty;
- ARC-Challenge test: Spearman with the school grade, 1 - success share, and the IRT difficulty.
Beside them, every text-only reading (length, TF-IDF, MiniLM embedding and their stack) trained here on the same MATH
training rows as the registry's probes, so "the best text-only reading" is a fair reference.
- leave one benchmark out on the joint IRT scale (``mixed``'s ``irt_difficulty``, one ability per model across benchmarks):
  the linear and stacked probes and the text-only readings trained on every other benchmark, scored on the left-out one; the
  activation reading compared is the one with the better CV score on the training benchmarks.
Every cell has n and a bootstrap 95% CI, and the partial Spearman given the prompt's token count (with its CI); the chosen
reading's lead over the best text-only one has a paired bootstrap CI. The activation probes are read through the product's
own path (``probes_hub.apply``); features are cached, so a second run only reads. Ends with ``RESULT probe=... math500_spearman=...
math500_partial=... gsm8k_spearman=... gsm8k_length=... gsm8k_best_text=... mathl5_spearman=... mathl5_length=... mathl5_best_text=...
lobo_gsm8k=... lobo_gsm8k_best_text=... lobo_mathl5=... lobo_mathl5_best_text=...`` (and each lead's CI) for the level probe the
app reads (chosen by training-data CV), against 1 - success share; then ``bf16_math500_spearman=... bf16_gsm8k_spearman=...
bf16_mathl5_spearman=...``: the same probe read from its model in bfloat16.

    python -m eval.bench_difficulty [--quick] [--registry DIR] [--data-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eval import add_size_options, sized
from probes_hub.apply import choose_probes, probe_features, source_for_probe
from probes_hub.cache import sha256_text
from probes_hub.data.datasets import BUILTIN, GRADED, load_dataset, resolve_data_dir, row_roles
from probes_hub.data.outcomes import benchmark_models, joint_irt_difficulty
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.models import display_id_for, load_model
from probes_hub.hub.registry import Registry
from probes_hub.metrics import partial_spearman_metric, spearman_difference_metric, spearman_metric
from probes_hub.probes import PROBE_TYPES
from probes_hub.probes.stacked import TEXT_STACK, reading_for_training

TRAINED_ON = ("math", "math500")
"""Datasets whose ``level`` probes are compared: MATH train (7,415 questions) and MATH-500's own 300 training questions."""
QUICK_QUESTIONS = 200
"""Questions per cross-benchmark set with ``--quick`` (a seeded subset)."""
SMOKE_QUESTIONS = 24
"""Questions per set, MATH-500 included, with ``--smoke``."""
TEXT_READINGS = ("length", "tfidf", "embedding", TEXT_STACK)
"""The text-only readings: the references an activation reading must beat."""
LOBO_PROBES = ("linear", "stacked", *TEXT_READINGS)
"""Readings trained leave-one-benchmark-out: the activation probes and every text-only one."""
ACTIVATION_KINDS = tuple(kind for kind in LOBO_PROBES if kind in PROBE_TYPES and PROBE_TYPES[kind].reads_activations)
TEXT_TRAINED_ON = "math (text)"
"""How the table names the text-only readings trained here on MATH's training rows."""
SMOKE_MATH_TRAIN = 300
"""MATH training questions (a seeded subset) the text-only readings train on with ``--smoke``."""
QUICK_MATH_TRAIN = 2000
"""... and with ``--quick`` (all 7,415 otherwise)."""
LOBO_QUICK = ("gsm8k", "math-l5")
"""Left-out benchmarks with ``--quick`` and ``--smoke`` (every benchmark of ``mixed`` otherwise)."""
LOBO_SMOKE_QUESTIONS = 300
"""Questions of ``mixed`` (a seeded subset) for the leave-one-benchmark-out part with ``--smoke``."""


@dataclass
class Target:
    """One column of the table: questions of a benchmark and the difficulty they are ranked against (higher: harder)."""

    benchmark: str
    target: str
    questions: list[str]
    values: np.ndarray

    @property
    def key(self) -> str:
        """The activation cache key of the questions (targets of one benchmark share their questions, so their features)."""
        return sha256_text(self.benchmark, *self.questions)[:16]


def cross_benchmark_targets(data_dir: str | None, *, questions: int | None) -> list[Target]:
    """GSM8K test, MATH level 5 and ARC-Challenge test with their difficulty targets (seeded subsets of ``questions`` when given)."""
    targets = []
    for benchmark, name in (("gsm8k", "outcomes-gsm8k"), ("math-l5", "outcomes-math-l5")):
        frame = _subset(load_dataset(name, data_dir=data_dir).frame, questions)
        targets.append(Target(benchmark, "1 - success share", frame["question"].tolist(), 1 - frame["success_rate"].to_numpy(dtype=float)))
        if "irt_difficulty" in frame:
            targets.append(Target(benchmark, "IRT difficulty", frame["question"].tolist(), frame["irt_difficulty"].to_numpy(dtype=float)))
    arc = load_dataset("arc-challenge", data_dir=data_dir).frame
    outcomes = load_dataset("outcomes-arc-challenge", data_dir=data_dir).frame.drop_duplicates("stem", keep=False)
    arc = _subset(arc.merge(outcomes[["stem", "success_rate", "irt_difficulty"]], on="stem", how="left"), questions)
    questions = arc["question"].tolist()
    targets.append(Target("arc-challenge", "grade", questions, arc["grade"].to_numpy(dtype=float)))
    targets.append(Target("arc-challenge", "1 - success share", questions, 1 - arc["success_rate"].to_numpy(dtype=float)))
    targets.append(Target("arc-challenge", "IRT difficulty", questions, arc["irt_difficulty"].to_numpy(dtype=float)))
    return targets


def _subset(frame: pd.DataFrame, questions: int | None) -> pd.DataFrame:
    if not questions or len(frame) <= questions:
        return frame.reset_index(drop=True)
    return frame.sample(questions, random_state=0).sort_index().reset_index(drop=True)


def evaluate_model(registry: Registry, display_id: str, data_dir: str | None, *, questions: int | None, math500_questions: int | None = None,
                   text_rows: int | None = None) -> list[dict]:
    """Every cell (probe x benchmark x target) for one model's level probes."""
    names = [e.name for dataset in TRAINED_ON for e in registry.list(dataset=dataset, label="level", model=display_id)]
    probes = registry.load_all(names=names).probes
    source = source_for_probe(next(p for p in probes.values() if p.fingerprint))
    rows = []
    math500 = load_dataset("math500", data_dir=data_dir).subset(math500_questions)
    features, _ = probe_features(source, probes, math500.frame["question"].tolist(), data_hash=math500.content_hash, use_cache=True)
    irt = load_dataset("outcomes-math500", data_dir=data_dir).frame.set_index("question")["irt_difficulty"]
    targets = {"level": math500.frame["level"].to_numpy(dtype=float), "IRT difficulty": irt.reindex(math500.frame["question"]).to_numpy(dtype=float)}
    for name, probe in probes.items():
        own = probe.record_.data.dataset == "math500"
        rows_used = np.flatnonzero((math500.frame["split"] == "test").to_numpy()) if own else np.arange(len(math500.frame))
        prediction = probe.predict(features.take(rows_used))
        for target, values in targets.items():
            rows.append(_cell(name, probe, "math500", target, values[rows_used], prediction, features.token_counts[rows_used]))
    text = text_readings(source, data_dir, limit=text_rows)
    text_features = source.features(math500.frame["question"].tolist(), [])[0]
    for kind, probe in text.items():
        for target, values in targets.items():
            rows.append(_scored(f"math level {kind} (text)", display_id, TEXT_TRAINED_ON, kind, "math500", target, values, probe.predict(text_features),
                                text_features.token_counts))
    for target in cross_benchmark_targets(data_dir, questions=questions):
        known = np.flatnonzero(np.isfinite(target.values))
        features = probe_features(source, probes, target.questions, data_hash=target.key, use_cache=True)[0].take(known)
        for name, probe in probes.items():
            rows.append(_cell(name, probe, target.benchmark, target.target, target.values[known], probe.predict(features), features.token_counts))
        for kind, probe in text.items():
            rows.append(_scored(f"math level {kind} (text)", display_id, TEXT_TRAINED_ON, kind, target.benchmark, target.target, target.values[known],
                                probe.predict(features), features.token_counts))
    return rows


def text_readings(source, data_dir: str | None, *, limit: int | None) -> dict:
    """Every text-only reading of :data:`TEXT_READINGS` fitted on the MATH training rows the registry's ``math`` level probes
    trained on (the token counts are ``source``'s, as the length probe's are)."""
    math = load_dataset("math", data_dir=data_dir).subset(limit)
    fit = row_roles(math, "level")["fit"]
    features = source.features(math.frame["question"].tolist(), [])[0].take(fit)
    y = math.frame["level"].to_numpy(dtype=float)[fit]
    return {kind: reading_for_training(kind, GRADED).fit(features, y) for kind in TEXT_READINGS}


def _cell(name: str, probe, benchmark: str, target: str, y: np.ndarray, prediction: np.ndarray, token_counts: np.ndarray) -> dict:
    """One registry probe's cell."""
    return _scored(name, probe.record_.model.display_id if probe.record_.model else "", probe.record_.data.dataset, probe.probe_type,
                   benchmark, target, y, prediction, token_counts)


def _scored(name: str, model: str, trained_on: str, probe_type: str, benchmark: str, target: str, y: np.ndarray, prediction: np.ndarray,
            token_counts: np.ndarray) -> dict:
    """Spearman and partial Spearman given prompt length, each with its CI and n."""
    spearman = spearman_metric(y, prediction)
    partial = partial_spearman_metric(y, prediction, token_counts)
    return {"probe": name, "model": model, "trained_on": trained_on, "probe_type": probe_type, "benchmark": benchmark, "target": target,
            "spearman": spearman.value, "low": spearman.low, "high": spearman.high, "n": spearman.n, "partial": partial.value,
            "partial_low": partial.low, "partial_high": partial.high, "y": y, "prediction": prediction, "chosen": False}


def lobo_rows(data_dir: str | None, *, benchmarks: list[str] | None, layers: list[int] | None, questions: int | None) -> list[dict]:
    """Leave one benchmark out on the joint IRT scale: probes trained on ``mixed``'s ``irt_difficulty`` of every other benchmark
    (the joint fit redone without the left-out one, so none of its responses shape the labels), scored on all of the left-out
    benchmark's questions against 1 - its success share and its own IRT difficulty; the text-only readings trained the same way.
    ``layers``: the layers searched (None: every layer). Each cell records whether its reading is the CV-chosen activation reading."""
    mixed = load_dataset("mixed", data_dir=data_dir).subset(questions)
    frame = mixed.frame
    lm = load_model()
    features, _ = ModelFeatures(lm).features(frame["question"].tolist(), layers or list(range(lm.n_layers)), data_hash=mixed.content_hash,
                                             use_cache=True)
    models = benchmark_models(resolve_data_dir(data_dir))
    model = features.model.display_id
    rows = []
    for left_out in benchmarks or list(dict.fromkeys(frame["benchmark"])):
        inside = (frame["benchmark"] == left_out).to_numpy()
        train, test = np.flatnonzero(~inside), np.flatnonzero(inside)
        y = joint_irt_difficulty(frame.iloc[train], models)
        targets = {"1 - success share": 1 - frame["success_rate"].to_numpy(dtype=float)[test]}
        own = load_dataset(f"outcomes-{left_out}", data_dir=data_dir) if f"outcomes-{left_out}" in BUILTIN else None
        if own is not None and "irt_difficulty" in own.labels:
            irt = own.frame.set_index("id")["irt_difficulty"]
            targets["its IRT difficulty"] = irt.reindex(frame["id"].iloc[test]).to_numpy(dtype=float)
        test_features = features.take(test)
        fitted = {kind: reading_for_training(kind, GRADED).fit(features.take(train), y) for kind in LOBO_PROBES}
        chosen = max(ACTIVATION_KINDS, key=lambda kind: fitted[kind].selection_.cv_score)
        for kind, probe in fitted.items():
            prediction = probe.predict(test_features)
            for target, values in targets.items():
                known = np.isfinite(values)
                rows.append({**_scored(f"mixed irt_difficulty {kind}", model if kind in ACTIVATION_KINDS else "", "mixed (LOBO)", kind,
                                       left_out, target, values[known], prediction[known], test_features.token_counts[known]),
                             "chosen": kind == chosen})
    return rows


def print_tables(table: pd.DataFrame) -> None:
    for (benchmark, target), part in table.groupby(["benchmark", "target"], sort=False):
        print(f"\n== {benchmark}: Spearman with {target} [95% CI] | partial given prompt length [95% CI] (n={sorted(set(part['n']))}; "
              "*: the activation reading chosen by CV on the training benchmarks)")
        for row in part.itertuples():
            print(f"  {row.model.split('/')[-1][:22]:22s} {row.trained_on:12s} {row.probe_type:11s}{'*' if row.chosen else ' '} {row.spearman:+.3f} [{row.low:+.3f}, {row.high:+.3f}] | "
                  f"{row.partial:+.3f} [{row.partial_low:+.3f}, {row.partial_high:+.3f}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_difficulty", description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick=f"the embedded model only, a seeded {QUICK_QUESTIONS}-question subset of each cross-benchmark set, "
                                   f"text readings fitted on {QUICK_MATH_TRAIN} MATH training questions",
                     smoke=f"a seeded {SMOKE_QUESTIONS}-question subset of every set, MATH-500 included")
    parser.add_argument("--registry", default=None, help="registry folder (default: the bundled one)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    parser.add_argument("--out", default=None, help="also write every cell as JSON to this file")
    args = parser.parse_args(argv)
    registry = Registry(args.registry)
    embedded = display_id_for(None)
    models = sorted({e.model for e in registry.list(dataset="math", label="level")}, key=lambda m: (m != embedded, m))  # the embedded model first
    if not models:
        parser.error("the registry has no level probes trained on 'math'; train them with: probes-hub train --dataset math --label level")
    questions = sized(args, full=None, quick=QUICK_QUESTIONS, smoke=SMOKE_QUESTIONS)
    models = sized(args, full=models, quick=models[:1], smoke=models)  # quick: the embedded model only (the RESULT line's)
    rows = [row for model in models for row in evaluate_model(registry, model, args.data_dir, questions=questions,
                                                             math500_questions=SMOKE_QUESTIONS if args.smoke else None,
                                                             text_rows=sized(args, full=None, quick=QUICK_MATH_TRAIN, smoke=SMOKE_MATH_TRAIN))]
    rows += lobo_rows(args.data_dir, benchmarks=sized(args, full=None, quick=list(LOBO_QUICK), smoke=list(LOBO_QUICK)),
                      layers=sized(args, full=None, quick=list(range(8, 15)), smoke=[8, 9]),
                      questions=sized(args, full=None, quick=None, smoke=LOBO_SMOKE_QUESTIONS))
    table = pd.DataFrame(rows)
    print_tables(table)
    if args.out:
        Path(args.out).write_text(json.dumps([{k: v for k, v in row.items() if k not in ("y", "prediction")} for row in rows], indent=1),
                                  encoding="utf-8")
    print(f"{result_line(registry, table)} {' '.join(bfloat16_parts(registry, table, args.data_dir, questions=questions))}")
    return 0


def bfloat16_parts(registry: Registry, table: pd.DataFrame, data_dir: str | None, *, questions: int | None) -> list[str]:
    """The RESULT line's chosen probe read from its model in bfloat16 (measured whatever its verify-dtype check says): Spearman with the
    MATH-500 level and with 1 - success share on GSM8K and MATH level 5, as ``bf16_*`` keys beside the float32 ones."""
    from probes_hub.apply import read_probes

    model = table["model"].iloc[0]
    entries = registry.list(dataset="math", label="level", model=model)
    chosen = choose_probes(entries, _Identity(next(e.fingerprint for e in entries if e.fingerprint)))[0]
    probe = registry.load_all(names=[chosen]).probes[chosen]
    source = source_for_probe(probe).in_dtype("bfloat16")
    math500 = load_dataset("math500", data_dir=data_dir)
    cells = [("math500", math500.frame["question"].tolist(), math500.frame["level"].to_numpy(dtype=float), math500.content_hash)]
    cells += [(target.benchmark.replace("-", ""), target.questions, target.values, target.key) for target in cross_benchmark_targets(data_dir, questions=questions)
              if target.benchmark in ("gsm8k", "math-l5") and target.target == "1 - success share"]
    parts = []
    for key, texts, values, data_hash in cells:
        reading = read_probes(source, {chosen: probe}, texts, data_hash=data_hash, use_cache=True, own_dtype=False)[chosen].prediction
        known = np.isfinite(values)
        parts.append(f"bf16_{key}_spearman={spearman_metric(values[known], reading[known]).value:.4f}")
    return parts


def result_line(registry: Registry, table: pd.DataFrame) -> str:
    """The RESULT line for the first model: its CV-chosen ``math`` level probe against the length baseline and the best text-only
    reading (against 1 - success share), and the leave-one-benchmark-out CV-chosen activation reading against the best text-only one."""
    model = table["model"].iloc[0]
    entries = registry.list(dataset="math", label="level", model=model)
    chosen = choose_probes(entries, _Identity(next(e.fingerprint for e in entries if e.fingerprint)))[0]
    cells = table.set_index(["probe", "benchmark", "target"])
    length = next((e.name for e in entries if e.probe_type == "length"), None)
    if length is None:
        raise SystemExit("the registry has no 'length' probe for math level; train it beside the others: "
                         "probes-hub train --dataset math --label level --probe linear length tfidf")

    def value(name: str, benchmark: str, target: str, column: str = "spearman") -> float:
        return float(cells.loc[(name, benchmark, target), column])

    parts = [f"probe={registry.load_all(names=[chosen]).probes[chosen].probe_type}", f"math500_spearman={value(chosen, 'math500', 'level'):.4f}",
             f"math500_partial={value(chosen, 'math500', 'level', 'partial'):.4f}"]
    success = "1 - success share"
    text = table[(table["trained_on"] == TEXT_TRAINED_ON) & (table["target"] == success) & (table["model"] == model)]
    lobo = table[(table["trained_on"] == "mixed (LOBO)") & (table["target"] == success)]
    for benchmark, key in (("gsm8k", "gsm8k"), ("math-l5", "mathl5")):
        best = text[text["benchmark"] == benchmark].sort_values("spearman").iloc[-1]
        lead = spearman_difference_metric(best["y"], cells.loc[(chosen, benchmark, success), "prediction"], best["prediction"])
        parts += [f"{key}_spearman={value(chosen, benchmark, success):.4f}", f"{key}_length={value(length, benchmark, success):.4f}",
                  f"{key}_best_text={best['spearman']:.4f}", f"{key}_lead={lead.value:.4f}", f"{key}_lead_low={lead.low:.4f}"]
    for benchmark, key in (("gsm8k", "gsm8k"), ("math-l5", "mathl5")):
        cells_here = lobo[lobo["benchmark"] == benchmark]
        if cells_here.empty:
            continue
        activation = cells_here[cells_here["chosen"].astype(bool)].iloc[0]
        best = cells_here[cells_here["probe_type"].isin(TEXT_READINGS)].sort_values("spearman").iloc[-1]
        lead = spearman_difference_metric(best["y"], activation["prediction"], best["prediction"])
        parts += [f"lobo_{key}={activation['spearman']:.4f}", f"lobo_{key}_best_text={best['spearman']:.4f}", f"lobo_{key}_lead_low={lead.low:.4f}"]
    return "RESULT " + " ".join(parts)


@dataclass(frozen=True)
class _Identity:
    """What :func:`choose_probes` compares a probe against: the model's fingerprint."""

    fingerprint: str


if __name__ == "__main__":
    raise SystemExit(main())

