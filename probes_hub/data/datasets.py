"""Uniform question tables for the built-in datasets and local files, with the fixed splits in ONE place.

Every table is a pandas DataFrame with columns ``id``, ``question`` (the exact text the model sees),
``split`` (``train``/``test``), one column per label, and metadata columns. Datasets that ship only a test
set get a fixed, seeded split: 60% train / 40% test, stratified by ``SPLIT_STRATA[name]``
(see :data:`SPLIT_RULES`). The test split is never used for selection or calibration.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from probes_hub.cache import sha256_text
from probes_hub.config import setting
from probes_hub.errors import UnknownName
from probes_hub.paths import DEFAULT_DATA_DIR
from probes_hub.schema.records import BINARY, GRADED, DataInfo

SPLIT_SEED = 0
TRAIN_FRACTION = 0.6
CALIBRATION_FRACTION = 0.2
MMLU_PRO_SUBSET = 2000
"""Questions of MMLU-Pro's 12,032 that the bundled registry and ``mixed`` use (a seeded subset, each keeps its split)."""
"""Share of a binary label's training questions held out for Platt calibration (never used for fitting or selection)."""
SPLIT_RULES = {
    "gsm8k": "official train / test files",
    "math500": "seeded 60/40 train/test, stratified by level",
    "math": "train: the MATH train split (math_train, minus rows flagged near a MATH-500 problem); test: all 500 MATH-500 questions",
    "arc-easy": "seeded 60/40 train/test, stratified by school grade",
    "arc-challenge": "seeded 60/40 train/test, stratified by school grade",
    "mmlu-pro": "seeded 60/40 train/test, stratified by category (one split shared by every model's label)",
    "local file": "its 'split' column if present, else seeded 60/40, stratified by the first label",
}
LETTERS = "ABCDEFGHIJKLMNOP"


@dataclass
class QuestionSet:
    """A loaded dataset: the table, its label columns with their task type, and a content hash."""

    name: str
    frame: pd.DataFrame
    labels: dict[str, str]  # label column -> "graded" | "binary"
    split_rule: str
    source: str = ""
    _hash: str | None = field(default=None, repr=False)

    @property
    def content_hash(self) -> str:
        """sha256 over (id, question) pairs: the activation cache key for this data."""
        if self._hash is None:
            self._hash = sha256_text(*(f"{i}\t{q}" for i, q in zip(self.frame["id"], self.frame["question"])))[:16]
        return self._hash

    def task(self, label: str) -> str:
        """Task type of a label, with an error listing the available labels."""
        if label not in self.labels:
            raise UnknownName(f"Dataset '{self.name}' has no label '{label}'. Available: {', '.join(sorted(self.labels))}")
        return self.labels[label]

    def subset(self, limit: int | None, *, seed: int = SPLIT_SEED) -> QuestionSet:
        """A seeded random subset of ``limit`` rows that keeps each row's split (so splits stay comparable)."""
        if not limit or limit >= len(self.frame):
            return self
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.permutation(len(self.frame))[:limit])
        return QuestionSet(self.name, self.frame.iloc[keep].reset_index(drop=True), self.labels, self.split_rule, self.source)


def resolve_data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data folder: ``override`` (the ``--data-dir`` flag), else ``$PROBES_HUB_DATA_DIR``, else ``../shared/data`` beside the
    project when it exists, else the folder ``probes-hub data pull`` fills (in the cache).

    Raises:
        FileNotFoundError: naming the folders that were looked in and how to get the data.
    """
    from probes_hub.data.pull import pulled_data_dir

    chosen = override or setting("PROBES_HUB_DATA_DIR")
    candidates = [Path(chosen)] if chosen else [DEFAULT_DATA_DIR, pulled_data_dir()]
    for path in candidates:
        if path.expanduser().is_dir():
            return path.expanduser().resolve()
    looked = " or ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"Data directory not found: {looked}. Get the data with `probes-hub data pull --repo ORG/NAME` (a Hugging Face dataset repo "
        "with the data folder's layout), or pass --data-dir DIR / set PROBES_HUB_DATA_DIR to a folder holding gsm8k/, math500/, arc/ "
        "and mmlu_pro/.")


def stratified_split(strata: pd.Series, *, seed: int = SPLIT_SEED, train_fraction: float = TRAIN_FRACTION) -> np.ndarray:
    """Assign ``train``/``test`` per row: within each stratum a seeded shuffle, first ``round(f*n)`` to train."""
    out = np.empty(len(strata), dtype=object)
    rng = np.random.default_rng(seed)
    for _, index in sorted(strata.groupby(strata.astype(str)).indices.items()):
        order = rng.permutation(index)
        n_train = int(round(train_fraction * len(order)))
        out[order[:n_train]] = "train"
        out[order[n_train:]] = "test"
    return out


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl file, one per non-blank line; errors name the file and line."""
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}, line {number}: invalid JSON ({error.msg} at column {error.colno}).") from error
                if not isinstance(row, dict):
                    raise ValueError(f"{path}, line {number}: expected a JSON object per line, found {type(row).__name__}.")
                rows.append(row)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start} of the line that failed); save it as UTF-8.") from error
    return rows


def require_file(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"Expected data file {path} is missing (is the data directory right?).")
    return path


def format_choices(stem: str, choices: list[str]) -> str:
    """Question text with lettered options, as the model sees multiple-choice questions."""
    lines = [stem.strip(), ""] + [f"{LETTERS[i]}. {text}" for i, text in enumerate(choices)]
    return "\n".join(lines)


def _gsm8k(root: Path) -> QuestionSet:
    frames = []
    for split in ("train", "test"):
        rows = read_jsonl(require_file(root / "gsm8k" / f"{split}.jsonl"))
        frame = pd.DataFrame(rows)
        frame["id"] = [f"{split}-{i}" for i in range(len(frame))]
        frame["split"] = split
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    frame["final_answer"] = frame["answer"].str.split("####").str[-1].str.strip()
    frame["steps"] = frame["answer"].str.split("####").str[0].str.strip().str.count("\n") + 1
    return QuestionSet("gsm8k", frame[["id", "question", "split", "steps", "final_answer", "answer"]], {"steps": GRADED}, SPLIT_RULES["gsm8k"])


def _math500(root: Path) -> QuestionSet:
    frame = pd.DataFrame(read_jsonl(require_file(root / "math500" / "test.jsonl")))
    frame = frame.rename(columns={"unique_id": "id", "problem": "question"})
    frame["split"] = stratified_split(frame["level"])
    return QuestionSet("math500", frame[["id", "question", "split", "level", "subject", "answer", "solution"]], {"level": GRADED}, SPLIT_RULES["math500"])


def _math(root: Path) -> QuestionSet:
    """MATH train problems (all training questions) with MATH-500 (all 500) as the test set.

    Rows that math_train's README flags as near-duplicates of a MATH-500 problem (``near_math500``; templated siblings with
    another answer) are left out, the stricter of the two splits it offers.
    """
    train = pd.DataFrame(read_jsonl(require_file(root / "math_train" / "questions.jsonl")))
    train = train[train["near_math500"].isna()].assign(split="train")
    test = _math500(root).frame.assign(split="test")
    frame = pd.concat([train, test], ignore_index=True)
    return QuestionSet("math", frame[["id", "question", "split", "level", "subject", "answer", "solution"]], {"level": GRADED}, SPLIT_RULES["math"])


def _arc(root: Path, which: str) -> QuestionSet:
    stem = "ARC-Easy-Test" if which == "arc-easy" else "ARC-Challenge-Test"
    grades = pd.read_csv(require_file(root / "arc" / f"{stem}.csv"), usecols=["questionID", "schoolGrade"])
    grade_of = dict(zip(grades["questionID"], grades["schoolGrade"]))
    rows = []
    for item in read_jsonl(require_file(root / "arc" / f"{stem}.jsonl")):
        choices = item["question"]["choices"]
        keys = [_letter_key(c["label"]) for c in choices]
        rows.append({
            "id": item["id"],
            "question": format_choices(item["question"]["stem"], [c["text"] for c in choices]),
            "stem": item["question"]["stem"],
            "grade": grade_of.get(item["id"], np.nan),
            "choices": [c["text"] for c in choices],
            "answer": LETTERS[keys.index(_letter_key(item["answerKey"]))],
        })
    frame = pd.DataFrame(rows)
    frame["split"] = stratified_split(frame["grade"])
    return QuestionSet(which, frame[["id", "question", "split", "grade", "stem", "choices", "answer"]], {"grade": GRADED}, SPLIT_RULES[which])


def _letter_key(key: str) -> str:
    """ARC uses 1-4 for some answer keys; map them to A-D."""
    return LETTERS[int(key) - 1] if key.isdigit() else key


def label_for_model(model: str) -> str:
    """MMLU-Pro correctness label name for one of the 29 recorded models."""
    return f"correct:{model}"


OUTPUT_LENGTH_LABEL = "log_output_chars"
"""MMLU-Pro's cost label: the mean over the recorded models (those with lengths) of log(characters of their answer)."""


def _mmlu_pro(root: Path) -> QuestionSet:
    questions = pd.DataFrame(read_jsonl(require_file(root / "mmlu_pro" / "questions.jsonl")))
    outcomes = pd.read_csv(require_file(root / "mmlu_pro" / "outcomes.csv"), usecols=["question_id", "model", "correct", "output_chars"])
    wide = outcomes.pivot(index="question_id", columns="model", values="correct")
    wide.columns = [label_for_model(m) for m in wide.columns]
    lengths = outcomes[outcomes["output_chars"] > 0].groupby("question_id")["output_chars"].apply(lambda chars: float(np.log(chars).mean()))
    wide[OUTPUT_LENGTH_LABEL] = lengths
    frame = questions.merge(wide, left_on="question_id", right_index=True, how="left")
    frame["id"] = frame["question_id"].astype(str)
    frame["stem"] = frame["question"]
    frame["question"] = [format_choices(q, opts) for q, opts in zip(frame["question"], frame["options"])]
    frame["split"] = stratified_split(frame["category"])
    label_cols = list(wide.columns)
    frame["choices"] = frame["options"]
    meta = ["id", "question", "split", "category", "stem", "choices", "answer"]
    tasks = {c: GRADED if c == OUTPUT_LENGTH_LABEL else BINARY for c in label_cols}
    return QuestionSet("mmlu-pro", frame[meta + label_cols], tasks, SPLIT_RULES["mmlu-pro"])


BUILTIN = {
    "gsm8k": _gsm8k,
    "math500": _math500,
    "math": _math,
    "arc-easy": lambda root: _arc(root, "arc-easy"),
    "arc-challenge": lambda root: _arc(root, "arc-challenge"),
    "mmlu-pro": _mmlu_pro,
}


def load_dataset(
    name_or_path: str,
    *,
    data_dir: str | os.PathLike | None = None,
    question_column: str = "question",
    label_columns: list[str] | None = None,
    id_column: str | None = None,
) -> QuestionSet:
    """Load a built-in dataset by name or a local jsonl/csv/parquet file as a :class:`QuestionSet`.

    Args:
        name_or_path: one of ``gsm8k, math500, arc-easy, arc-challenge, mmlu-pro`` or a file path.
        data_dir: data folder for built-ins (see :func:`data_dir`).
        question_column / label_columns / id_column: column names for local files. Labels with exactly
            two values {0, 1} are binary, others graded.

    >>> ds = load_dataset("math500")  # doctest: +SKIP
    >>> ds.frame.columns[:4].tolist(), ds.labels  # doctest: +SKIP
    (['id', 'question', 'split', 'level'], {'level': 'graded'})
    """
    if name_or_path in BUILTIN:
        dataset = BUILTIN[name_or_path](resolve_data_dir(data_dir))
        dataset.source = name_or_path
        return dataset
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"Unknown dataset '{name_or_path}': not one of {', '.join(BUILTIN)} and not a file.")
    return _local_file(path, question_column, label_columns, id_column)


class DataChangedError(RuntimeError):
    """The data here is not the data a probe was trained on (its recorded content hash differs): data drift, not a bad input
    (the CLI exits 1); retrain the probe or restore the data."""


def training_dataset(data: DataInfo, labels: list[str], *, data_dir: str | os.PathLike | None = None) -> QuestionSet:
    """The exact rows a probe was trained on (built-in dataset or local file, subset and seed as recorded).

    Raises:
        DataChangedError: the rows here differ from the recorded content hash.
    """
    spec = data.dataset if data.dataset in BUILTIN else data.source
    dataset = load_dataset(spec, data_dir=data_dir, label_columns=labels).subset(data.limit, seed=data.seed)
    if dataset.content_hash != data.content_hash:
        raise DataChangedError(f"{data.dataset} changed since the probe was trained (content hash differs); retrain or restore the data.")
    return dataset


TABLE_READERS = {".jsonl": lambda p: pd.DataFrame(read_jsonl(p)), ".csv": lambda p: pd.read_csv(p, encoding="utf-8"), ".parquet": pd.read_parquet}
"""The question-file formats every command that takes a file of questions reads (a dataset to train on, a workload to route)."""


def read_table(path: Path) -> pd.DataFrame:
    """A .jsonl, .csv or .parquet file of questions as a table; errors name the file and say what to fix."""
    if path.suffix not in TABLE_READERS:
        raise ValueError(f"Unsupported file type '{path.suffix}' for {path}; use .jsonl, .csv or .parquet.")
    try:
        return TABLE_READERS[path.suffix](path)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8.") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as error:
        raise ValueError(f"{path} could not be read as {path.suffix[1:]}: {str(error).splitlines()[0]}") from error


def _local_file(path: Path, question_column: str, label_columns: list[str] | None, id_column: str | None) -> QuestionSet:
    frame = read_table(path)
    missing = [c for c in [question_column, *(label_columns or []), *([id_column] if id_column else [])] if c not in frame]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; columns are {list(frame.columns)}.")
    frame = frame.rename(columns={question_column: "question"})
    frame["id"] = frame[id_column].astype(str) if id_column else [str(i) for i in range(len(frame))]
    labels = {c: _infer_task(frame[c]) for c in (label_columns or [])}
    if "split" in frame:
        bad = set(frame["split"]) - {"train", "test"}
        if bad:
            raise ValueError(f"{path}: 'split' column must hold only 'train'/'test', found {sorted(bad)}.")
        rule = "the file's own 'split' column"
    else:
        strata = frame[label_columns[0]] if label_columns else pd.Series(np.zeros(len(frame)))
        frame["split"] = stratified_split(strata)
        rule = SPLIT_RULES["local file"]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem)
    return QuestionSet(name, frame, labels, rule, source=str(path))


def _infer_task(values: pd.Series) -> str:
    unique = set(pd.unique(values.dropna()))
    return BINARY if unique <= {0, 1} and len(unique) == 2 else GRADED


def row_roles(dataset: QuestionSet, label: str, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of ``fit``, ``calibration`` (binary labels only) and ``test`` rows with a known label.

    The calibration hold-out is drawn from all training questions before labels are looked at, so every
    label of a dataset holds out the same questions.
    """
    frame = dataset.frame
    known = frame[label].notna().to_numpy()
    is_train = (frame["split"] == "train").to_numpy()
    test = np.flatnonzero(known & (frame["split"] == "test").to_numpy())
    if dataset.task(label) != BINARY:
        return {"fit": np.flatnonzero(known & is_train), "calibration": np.array([], dtype=int), "test": test}
    train_rows = np.flatnonzero(is_train)
    role = stratified_split(pd.Series(np.zeros(len(train_rows))), seed=seed, train_fraction=1 - CALIBRATION_FRACTION)
    held_out = np.zeros(len(frame), dtype=bool)
    held_out[train_rows[role == "test"]] = True
    return {"fit": np.flatnonzero(known & is_train & ~held_out), "calibration": np.flatnonzero(known & held_out), "test": test}
