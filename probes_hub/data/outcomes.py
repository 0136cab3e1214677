"""Benchmarks with real models' per-question outcomes (``outcomes/`` in the data folder) as datasets.

Each of ``outcomes-gsm8k``, ``outcomes-math500``, ``outcomes-math-l5`` and ``outcomes-arc-challenge`` has
labels ``correct:<model>`` (binary; one setting per model, zero-shot where a model has several, as the
sources' settings are not comparable), ``success_rate`` (graded: the fraction of the benchmark's models
that answered correctly), ``irt_difficulty`` (graded: 2PL item difficulty, abilities fitted on the training
questions only; see :mod:`probes_hub.data.irt`; absent for a benchmark without training questions) and, where the sources kept the answers,
``log_output_chars`` (mean log length of the models' answers). ``mixed`` is their union with a seeded subset of MMLU-Pro,
each question tagged with its ``benchmark``.

Splits: a question keeps the split it has wherever it appears. Questions that join an existing dataset
take that dataset's split (all GSM8K outcome questions are GSM8K *test* questions, so that benchmark is
test-only; MATH-500 questions keep MATH-500's split; ARC-Challenge test questions keep ARC's); the others
get the seeded 60/40 split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from probes_hub.data.datasets import (
    BINARY,
    BUILTIN,
    GRADED,
    MMLU_PRO_SUBSET,
    OUTPUT_LENGTH_LABEL,
    SPLIT_RULES,
    QuestionSet,
    format_choices,
    label_for_model,
    read_jsonl,
    require_file,
    stratified_split,
)
from probes_hub.data.irt import fit_2pl
from probes_hub.data.model_names import match_models

SUCCESS_RATE_LABEL = "success_rate"
IRT_LABEL = "irt_difficulty"
SETTING_PREFERENCE = ("zero-shot", "5-shot", "8-shot", "one-shot")
"""A model's label uses the first of these settings it has."""
BENCHMARK_FOLDERS = {"gsm8k": "gsm8k", "math500": "math500", "math-l5": "math_l5", "arc-challenge": "arc_challenge"}
OUTCOME_SPLIT_RULE = "a question keeps its split where it joins an existing dataset (GSM8K test: test; MATH-500, ARC-Challenge: theirs); others seeded 60/40"
MIXED_SPLIT_RULE = "each question keeps its own benchmark's split"


def outcome_table(root: Path, benchmark: str) -> pd.DataFrame:
    """``question_id, model, setting, correct, output_chars`` rows of one benchmark, one setting per model."""
    folder = root / "outcomes" / BENCHMARK_FOLDERS[benchmark]
    rows = pd.read_csv(require_file(folder / "outcomes.csv"), usecols=["question_id", "model", "setting", "correct", "output_chars"])
    rows["question_id"] = rows["question_id"].astype(str)
    rank = {setting: i for i, setting in enumerate(SETTING_PREFERENCE)}
    chosen = rows.groupby("model")["setting"].agg(lambda s: min(set(s), key=lambda v: rank.get(v, len(rank))))
    return rows[rows["setting"] == rows["model"].map(chosen)]


def load_outcomes(root: Path, benchmark: str) -> QuestionSet:
    """One benchmark's questions with its models' success labels, success rate, IRT difficulty and answer lengths."""
    folder = root / "outcomes" / BENCHMARK_FOLDERS[benchmark]
    questions = pd.DataFrame(read_jsonl(require_file(folder / "questions.jsonl")))
    questions["question_id"] = questions["question_id"].astype(str)
    outcomes = outcome_table(root, benchmark)
    correct = outcomes.pivot(index="question_id", columns="model", values="correct").reindex(questions["question_id"])
    frame = questions.rename(columns={"question": "stem"}).copy()
    frame["id"] = [f"{benchmark}:{q}" for q in frame["question_id"]]
    frame["question"] = ([format_choices(s, c) for s, c in zip(frame["stem"], frame["choices"])] if "choices" in frame else frame["stem"])
    frame["benchmark"] = benchmark
    frame["split"] = _splits(root, benchmark, frame)
    labels = {label_for_model(m): BINARY for m in correct.columns}
    values = {label_for_model(m): correct[m].to_numpy(dtype=float) for m in correct.columns}
    values[SUCCESS_RATE_LABEL] = np.nanmean(correct.to_numpy(dtype=float), axis=1)
    labels[SUCCESS_RATE_LABEL] = GRADED
    train = (frame["split"] == "train").to_numpy()
    if train.sum() >= 2:  # abilities come from training questions only; a test-only benchmark has no IRT label
        values[IRT_LABEL] = fit_2pl(correct.to_numpy(dtype=float), train).difficulty
        labels[IRT_LABEL] = GRADED
    lengths = outcomes[outcomes["output_chars"] > 0].groupby("question_id")["output_chars"].apply(lambda chars: float(np.log(chars).mean()))
    if len(lengths):
        values[OUTPUT_LENGTH_LABEL] = lengths.reindex(questions["question_id"]).to_numpy()
        labels[OUTPUT_LENGTH_LABEL] = GRADED
    meta = ["id", "question", "split", "benchmark", "question_id", "stem", "answer"]
    table = pd.concat([frame[meta].reset_index(drop=True), pd.DataFrame(values)], axis=1)
    return QuestionSet(f"outcomes-{benchmark}", table, labels, OUTCOME_SPLIT_RULE)


def _splits(root: Path, benchmark: str, frame: pd.DataFrame) -> np.ndarray:
    """The split each question has in the dataset it joins, else a seeded 60/40 split."""
    split = pd.Series(np.nan, index=frame.index, dtype=object)
    join = frame["join_id"] if "join_id" in frame else pd.Series(np.nan, index=frame.index)
    joined = join.notna()
    if benchmark == "gsm8k":
        split[joined] = "test"  # the outcomes are on GSM8K's official test split
    elif benchmark in ("math500", "math-l5"):
        existing = BUILTIN["math500"](root).frame["split"].to_numpy()
        split[joined] = existing[join[joined].astype(int).to_numpy()]
    elif benchmark == "arc-challenge":
        existing = BUILTIN["arc-challenge"](root).frame.set_index("id")["split"]
        split[joined] = join[joined].map(existing).to_numpy()
    rest = split.isna().to_numpy()
    if rest.any():
        split[rest] = stratified_split(pd.Series(np.zeros(int(rest.sum()))))
    return split.to_numpy()


def load_mixed(root: Path) -> QuestionSet:
    """The union of the outcome benchmarks and MMLU-Pro's seeded 2,000-question subset (the bundled registry's, so
    MMLU-Pro does not outnumber the other benchmarks three to one); labels are shared by name (a model's success, success rate,
    answer length). ``irt_difficulty`` here is one scale across benchmarks (:func:`joint_irt_difficulty`), not the
    per-benchmark scales of the ``outcomes-*`` datasets."""
    parts, mmlu = _mixed_parts(root)
    mmlu_frame = mmlu.frame.assign(benchmark="mmlu-pro", id="mmlu-pro:" + mmlu.frame["id"])
    frames = [p.frame.drop(columns=[IRT_LABEL], errors="ignore") for p in parts] + [mmlu_frame]
    labels: dict[str, str] = {}
    for part in [*parts, mmlu]:
        labels.update({name: task for name, task in part.labels.items() if name != IRT_LABEL})
    mmlu_rate = mmlu.frame[[n for n, t in mmlu.labels.items() if t == BINARY]].mean(axis=1)
    frames[-1] = frames[-1].assign(**{SUCCESS_RATE_LABEL: mmlu_rate.to_numpy()})
    table = pd.concat(frames, ignore_index=True, sort=False)
    table[IRT_LABEL] = joint_irt_difficulty(table, {part.name.removeprefix("outcomes-"): _models(part) for part in [*parts, mmlu]})
    labels[IRT_LABEL] = GRADED
    columns = ["id", "question", "split", "benchmark", *labels]
    return QuestionSet("mixed", table[columns], labels, MIXED_SPLIT_RULE)


def _mixed_parts(root: Path) -> tuple[list[QuestionSet], QuestionSet]:
    """The outcome benchmarks, and MMLU-Pro's seeded subset, that ``mixed`` joins."""
    return [load_outcomes(root, benchmark) for benchmark in BENCHMARK_FOLDERS], BUILTIN["mmlu-pro"](root).subset(MMLU_PRO_SUBSET)


def _models(part: QuestionSet) -> list[str]:
    """The models a benchmark recorded, as it names them."""
    return [name.removeprefix("correct:") for name, task in part.labels.items() if task == BINARY and name.startswith("correct:")]


def benchmark_models(root: Path) -> dict[str, list[str]]:
    """Each benchmark of ``mixed`` (its ``benchmark`` column's value) with the models it recorded."""
    parts, mmlu = _mixed_parts(root)
    return {part.name.removeprefix("outcomes-"): _models(part) for part in [*parts, mmlu]}


def response_matrix(table: pd.DataFrame, models: dict[str, list[str]]) -> tuple[np.ndarray, list[str]]:
    """``[questions, models]`` responses of ``mixed``'s rows (NaN where a model did not answer that question's benchmark), one
    column per model across benchmarks (:func:`~probes_hub.data.model_names.match_models`), and the columns' names."""
    matched = match_models(models)
    names = sorted(set(matched.values()))
    column = {name: i for i, name in enumerate(names)}
    Y = np.full((len(table), len(names)), np.nan)
    benchmark = table["benchmark"].to_numpy()
    for (bench, model), name in matched.items():
        rows = benchmark == bench
        Y[rows, column[name]] = table.loc[rows, label_for_model(model)].to_numpy(dtype=float)
    return Y, names


def joint_irt_difficulty(table: pd.DataFrame, models: dict[str, list[str]]) -> np.ndarray:
    """2PL difficulty of every row of ``mixed`` on one scale: one ability per model across benchmarks, fitted on the training
    questions of every benchmark (a model seen in one benchmark only gets its ability from that benchmark's training questions),
    then every question's parameters with the abilities fixed."""
    Y, _ = response_matrix(table, models)
    return fit_2pl(Y, (table["split"] == "train").to_numpy()).difficulty


BUILTIN.update({f"outcomes-{benchmark}": (lambda root, b=benchmark: load_outcomes(root, b)) for benchmark in BENCHMARK_FOLDERS})
BUILTIN["mixed"] = load_mixed
SPLIT_RULES.update({f"outcomes-{benchmark}": OUTCOME_SPLIT_RULE for benchmark in BENCHMARK_FOLDERS})
SPLIT_RULES["mixed"] = MIXED_SPLIT_RULE
