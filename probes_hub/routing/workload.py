"""Route a workload: a file of questions in, one suggestion per question and the plan's expected accuracy and cost out.

The CLI's ``route-file`` and the app's "Route a workload" tab both call :func:`read_workload` and :func:`plan_workload`;
questions go through the pool router's batched path (:meth:`~probes_hub.routing.suggest.PoolRouter.suggest_many`).
When the file also records each pool model's outcome (``correct:<model>`` columns, and optionally ``output_chars:<model>``),
the plan's realised accuracy (and cost) is reported beside the expected one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from probes_hub.constants import UNFAMILIAR_BELOW
from probes_hub.data.datasets import read_table
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.progress import progress_bar
from probes_hub.routing.evaluate import Pool
from probes_hub.routing.suggest import PoolRouter, Suggestion
from probes_hub.schema.validation import check_question

MAX_WORKLOAD_QUESTIONS = 5000
"""Questions one call routes at most (split a larger workload into files of this size)."""
CORRECT_PREFIX, OUTPUT_CHARS_PREFIX = "correct:", "output_chars:"
"""Optional outcome columns of a workload file, one per pool model: its correctness (0/1) and its answer's length in characters."""
WORKLOAD_BATCH = 32
"""Questions read per forward pass."""


@dataclass(frozen=True)
class Workload:
    """The questions of a workload file, their ids, and (when the file records them for every pool model) the outcomes ``[n x model]``."""

    source: str
    ids: list[str]
    questions: list[str]
    correct: pd.DataFrame | None = None
    output_chars: pd.DataFrame | None = None


def read_workload(path: str | Path, pool: Pool, *, limit: int = MAX_WORKLOAD_QUESTIONS) -> Workload:
    """Read and check a workload file (.jsonl, .csv or .parquet with a ``question`` column, optional ``id`` and outcome columns);
    a bad row is refused with the file and its row."""
    path = Path(path)
    frame = read_table(path)
    if "question" not in frame:
        raise ValueError(f"{path} has no 'question' column; columns are {list(frame.columns)}. Give one question per row in a 'question' column.")
    if not 0 < len(frame) <= limit:
        raise ValueError(f"{path} holds {len(frame)} questions; route between 1 and {limit} per call (split a larger workload into several files).")
    questions = [check_question(q, where=f"{path.name}, {_row(path, i)}: the question") for i, q in enumerate(frame["question"])]
    ids = frame["id"].astype(str).tolist() if "id" in frame else [str(i + 1) for i in range(len(frame))]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: the 'id' column repeats ids (e.g. {pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]!r}); make each id unique.")
    return Workload(path.name, ids, questions, _outcomes(path, frame, pool, CORRECT_PREFIX, {0, 1}), _outcomes(path, frame, pool, OUTPUT_CHARS_PREFIX))


def _row(path: Path, index: int) -> str:
    """Where row ``index`` (0-based, data rows) is in the file, as its user would look for it."""
    return {".csv": f"line {index + 2}", ".jsonl": f"line {index + 1}"}.get(path.suffix, f"row {index + 1}")


def _outcomes(path: Path, frame: pd.DataFrame, pool: Pool, prefix: str, allowed: set[float] | None = None) -> pd.DataFrame | None:
    """The ``<prefix><model>`` columns for every pool model as numbers, or None when the file has none of them."""
    columns = [f"{prefix}{m}" for m in pool.names]
    present = [c for c in columns if c in frame]
    if not present:
        return None
    if len(present) < len(columns):
        missing = [c for c in columns if c not in frame]
        raise ValueError(f"{path}: has {len(present)} of pool '{pool.name}''s {prefix}<model> columns; add {missing[:3]}"
                         f"{' ...' if len(missing) > 3 else ''} or drop them all.")
    values = frame[columns].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(float)) | (values.to_numpy(float) < 0)
    if allowed is not None:
        bad |= ~values.isin(allowed).to_numpy()
    if bad.any():
        row, column = map(int, np.argwhere(bad)[0])
        need = "0 or 1" if allowed is not None else "a number >= 0"
        raise ValueError(f"{path.name}, {_row(path, row)}: {columns[column]} is {str(frame[columns[column]].iloc[row])[:40]!r}; it must be {need}.")
    values.columns = pool.names
    return values


@dataclass(frozen=True)
class PlanSummary:
    """A plan's expected accuracy and cost beside always using each pool model (and realised ones when the workload records outcomes).
    Accuracies are mean predicted P(correct); costs are means per question in the pool's cost unit."""

    n: int
    lam: float | None
    target: float | None
    expected_accuracy: float
    expected_cost: float
    singles: dict[str, tuple[float, float]]
    """Per pool model: (expected accuracy, expected cost) of sending it every question."""
    best_model: str
    """The pool's most accurate model (on its training questions): the baseline the savings are against."""
    cheapest_model: str
    out_of_distribution: int
    shares: dict[str, float]
    realised: dict[str, tuple[float, float | None]] | None = None
    """Per plan ("plan", "always <best>", "always <cheapest>"): (accuracy, cost or None without output lengths)."""

    @property
    def cost_ratio(self) -> float:
        return self.expected_cost / self.singles[self.best_model][1]

    def rows(self) -> list[tuple[str, float, float]]:
        """(name, expected accuracy, expected cost) of the plan, always-best and always-cheapest."""
        return [("plan", self.expected_accuracy, self.expected_cost), (f"always {self.best_model}", *self.singles[self.best_model]),
                (f"always {self.cheapest_model}", *self.singles[self.cheapest_model])]


@dataclass(frozen=True)
class Plan:
    """One row per question (:data:`PLAN_COLUMNS`) and the summary."""

    rows: pd.DataFrame
    summary: PlanSummary


PLAN_COLUMNS = ("id", "model", "p_correct", "most_accurate", "p_most_accurate", "expected_cost", "cost_ratio", "in_distribution",
                "probes_dataset", "fallback")


def plan_workload(router: PoolRouter, source: FeatureSource, workload: Workload, *, lam: float | None = None, target: float | None = None,
                  progress: bool = True) -> Plan:
    """Suggest a model for every question of the workload, in batches through the router's batched path."""
    suggestions: list[Suggestion] = []
    bar = progress_bar(total=len(workload.questions), desc=f"Routing {workload.source}", disable=not progress)
    for start in range(0, len(workload.questions), WORKLOAD_BATCH):
        batch = workload.questions[start:start + WORKLOAD_BATCH]
        suggestions += router.suggest_many(router.features(source, batch), lam=lam, target=target)
        bar.update(len(batch))
    bar.close()
    pool, dataset = router.pool, router.pool.dataset
    rows = pd.DataFrame([{"id": i, "model": s.model, "p_correct": s.p_correct[s.model], "most_accurate": s.most_accurate,
                          "p_most_accurate": s.p_correct[s.most_accurate], "expected_cost": s.expected_cost[s.model], "cost_ratio": s.cost_ratio,
                          "in_distribution": s.in_distribution, "probes_dataset": s.probes_dataset, "fallback": s.probes_dataset != dataset}
                         for i, s in zip(workload.ids, suggestions)], columns=list(PLAN_COLUMNS))
    p = np.array([[s.p_correct[m] for m in pool.names] for s in suggestions])
    cost = np.array([[s.expected_cost[m] for m in pool.names] for s in suggestions])
    best = router.facts.most_accurate or pool.names[int(np.argmax(p.mean(axis=0)))]
    cheapest = min(pool.names, key=lambda m: router.facts.expected_cost[m])
    singles = {m: (float(p[:, i].mean()), float(cost[:, i].mean())) for i, m in enumerate(pool.names)}
    shares = rows["model"].value_counts(normalize=True).reindex(pool.names, fill_value=0.0)
    summary = PlanSummary(len(rows), None if target is not None else suggestions[0].lam, target, float(rows["p_correct"].mean()),
                          float(rows["expected_cost"].mean()), singles, best, cheapest,
                          int((rows["in_distribution"].to_numpy(float) < UNFAMILIAR_BELOW).sum()), {m: float(v) for m, v in shares.items()},
                          _realised(workload, pool, rows["model"].tolist(), best, cheapest))
    return Plan(rows, summary)


def _realised(workload: Workload, pool: Pool, chosen: list[str], best: str, cheapest: str) -> dict[str, tuple[float, float | None]] | None:
    """The plan's and the two fixed choices' accuracy (and cost, with output lengths) on the workload's recorded outcomes."""
    if workload.correct is None:
        return None
    correct = workload.correct.to_numpy(float)
    cost = None if workload.output_chars is None else workload.output_chars.to_numpy(float) / pool.chars_per_token * pool.token_costs
    rows = np.arange(len(chosen))
    result = {}
    for name, picks in (("plan", [pool.names.index(m) for m in chosen]), (f"always {best}", [pool.names.index(best)] * len(rows)),
                        (f"always {cheapest}", [pool.names.index(cheapest)] * len(rows))):
        result[name] = (float(correct[rows, picks].mean()), None if cost is None else float(cost[rows, picks].mean()))
    return result
