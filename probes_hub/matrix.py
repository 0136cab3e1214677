"""The leaderboard's first view: which source model's internal state knows each task best, beside text-only baselines.

Rows are source models and the baselines (prompt length, TF-IDF, the MiniLM sentence encoder); columns are
tasks (a dataset and label, or a dataset's success labels together); a cell is a test Spearman (graded) or
ROC-AUC (success) with its 95% CI. Each model's cell is the probe its *training-data* CV score chose among its
activation probes (never the best test score); success tasks average the chosen probes' ROC-AUC over the
task's labels, with a bootstrap CI of that mean that resamples questions and the number of test questions
(:data:`TaskMetrics`, from the leaderboard). Only tasks every single source model has are columns, so rows compare
like with like; a pair of models read together (``A + B``) shows the columns it has probes for ("—" elsewhere) and its mean rank
over those. Rows are sorted by mean rank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probes_hub.apply import choice_rank
from probes_hub.constants import EMBEDDED_MODEL_ALIAS
from probes_hub.extract.packaged import PACKAGED_MODELS
from probes_hub.probes import PROBE_TYPES, baseline_types
from probes_hub.schema.naming import PAIR_SEPARATOR

SUCCESS_PREFIX = "correct:"
BASELINE_ROWS = {kind: f"{PROBE_TYPES[kind].display_name} (baseline)" for kind in baseline_types()}
"""Each baseline's row name, from its probe type."""
EMBEDDING_PARAMETERS = 22_713_216
"""Parameters of the all-MiniLM-L6-v2 sentence encoder behind the embedding baseline (the scaling view's text-only reference)."""
PARAMETERS = {m.display_id: m.parameters for m in PACKAGED_MODELS.values()}


def task_name(dataset: str, label: str) -> str:
    """'math level', or 'mmlu-pro success' for all of a dataset's per-model success labels."""
    return f"{dataset} success" if label.startswith(SUCCESS_PREFIX) else f"{dataset} {label}"


TaskMetrics = dict[tuple[str, str, str], dict]
"""Success tasks' mean ROC-AUC over labels by (model, dataset, probe type): ``value``, ``low``, ``high`` (a bootstrap CI that
resamples questions) and ``n`` (test questions), as ``leaderboard.success_task_metrics`` computes them."""


def model_task_cells(table: pd.DataFrame, task_metrics: TaskMetrics | None = None) -> pd.DataFrame:
    """One row per (source, task): value, low, high, n, labels (how many labels a success cell averages), kind, parameters, rank.

    Success cells take their value, CI and n from ``task_metrics`` where it has them (else the means of the labels' own)."""
    usable = ~table["status"].astype(str).str.startswith(("failed", "broken", "pending"))  # re-evaluated, or as recorded at training
    ok = table[usable & pd.to_numeric(table["value"], errors="coerce").notna()].copy()
    if ok.empty:
        return pd.DataFrame(columns=["source", "task", "value", "low", "high", "n", "labels", "kind", "parameters", "probe_type", "best", "rank"])
    ok["task_name"] = [task_name(d, lab) for d, lab in zip(ok["dataset"], ok["label"])]
    activation = ok[ok["probe_type"].map(lambda t: PROBE_TYPES[t].reads_activations if t in PROBE_TYPES else False)]
    embedded = PACKAGED_MODELS[EMBEDDED_MODEL_ALIAS].display_id
    models = sorted(dict.fromkeys(activation["model"]), key=lambda m: m != embedded)  # the default model first: its baselines are the rows
    cells = [cell for model in models for cell in _model_cells(activation[activation["model"] == model], model, task_metrics or {})]
    frame = pd.DataFrame(cells)
    if frame.empty:
        return frame
    singles = [m for m in models if PAIR_SEPARATOR not in m] or models  # a pair's row shows the tasks it has; it does not narrow the columns
    shared = set.intersection(*(set(frame.loc[frame["source"] == m, "task"]) for m in singles))
    frame = frame[frame["task"].isin(shared)]
    default = models[0]
    chosen = {task: probe_type for task, probe_type in frame.loc[frame["source"] == default, ["task", "probe_type"]].itertuples(index=False)}
    frame = pd.concat([frame, pd.DataFrame([cell for task in sorted(shared) for cell in _baseline_cells(ok, task, default, chosen[task], task_metrics or {})])],
                      ignore_index=True)
    frame["best"] = frame["value"] == frame.groupby("task")["value"].transform("max")
    frame["task_rank"] = frame.groupby("task")["value"].rank(ascending=False, method="min")
    frame["rank"] = frame.groupby("source")["task_rank"].transform("mean")
    return frame.drop(columns="task_rank").sort_values(["rank", "source", "task"]).reset_index(drop=True)


def _model_cells(rows: pd.DataFrame, model: str, task_metrics: TaskMetrics) -> list[dict]:
    cells = []
    for task, group in rows.groupby("task_name"):
        # the app's choice (apply.choice_rank) per label; a success task averages its labels' probes of the type chosen most often
        ranks = [choice_rank(t, k, c) for t, k, c in zip(group["probe_type"], group["task"], pd.to_numeric(group.get("cv_score"), errors="coerce"))]
        best = group.assign(rank=ranks).sort_values("rank", kind="stable").drop_duplicates(["dataset", "label"])
        probe_type = str(best["probe_type"].mode().iloc[0])
        chosen = group[group["probe_type"] == probe_type].drop_duplicates(["dataset", "label"])
        cells.append(_cell(model, task, chosen, "model", PARAMETERS.get(model, np.nan), probe_type, task_metrics))
    return cells


def _baseline_cells(ok: pd.DataFrame, task: str, default_model: str, chosen_type: str, task_metrics: TaskMetrics) -> list[dict]:
    """Each baseline's cell for a task: its probes' test values where they exist (the default model's for length, which depends
    on the tokenizer), else the baseline value recorded beside the default model's chosen probes (no CI)."""
    rows = ok[ok["task_name"] == task]
    cells = []
    for kind, source in BASELINE_ROWS.items():
        probes = rows[rows["probe_type"] == kind]
        probes = probes[probes["model"] == default_model] if (probes["model"] == default_model).any() else probes
        parameters = EMBEDDING_PARAMETERS if kind == "embedding" else np.nan
        if len(probes):
            cells.append(_cell(source, task, probes.drop_duplicates(["dataset", "label"]), "baseline", parameters, kind, task_metrics))
            continue
        beside = rows[(rows["model"] == default_model) & (rows["probe_type"] == chosen_type)]
        recorded = pd.to_numeric(beside[f"baseline_{kind}"], errors="coerce").dropna()
        if len(recorded):
            cells.append({"source": source, "task": task, "value": float(recorded.mean()), "low": np.nan, "high": np.nan, "n": np.nan,
                          "labels": len(recorded), "kind": "baseline", "parameters": parameters, "probe_type": kind})
    return cells


def _cell(source: str, task: str, rows: pd.DataFrame, kind: str, parameters: float, probe_type: str, task_metrics: TaskMetrics) -> dict:
    number = {c: pd.to_numeric(rows[c], errors="coerce").mean() for c in ("value", "low", "high", "n")}
    key = (str(rows["model"].iloc[0]), str(rows["dataset"].iloc[0]), probe_type)
    if task.endswith(" success") and key in task_metrics:
        number = {c: task_metrics[key][c] for c in ("value", "low", "high", "n")}
    return {"source": source, "task": task, **{k: float(v) for k, v in number.items()}, "labels": len(rows), "kind": kind,
            "parameters": parameters, "probe_type": probe_type}


def matrix_table(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells as a wide table of "value [low, high]" strings (rows sorted by mean rank): for CSV, Markdown and the app."""
    if cells.empty:
        return pd.DataFrame()
    text = cells.assign(cell=[_format(v, lo, hi, best) for v, lo, hi, best in zip(cells["value"], cells["low"], cells["high"], cells["best"])])
    wide = text.pivot(index="source", columns="task", values="cell")
    order = cells.drop_duplicates("source").set_index("source")["rank"].sort_values()
    wide = wide.loc[order.index].fillna("—")
    wide.insert(0, "mean rank", [f"{r:.1f}" for r in order])
    return wide.reset_index()


def _format(value: float, low: float, high: float, best: bool) -> str:
    text = f"{value:.3f}" + (f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) and np.isfinite(high) else "")
    return f"**{text}**" if best else text


def matrix_markdown(cells: pd.DataFrame) -> str:
    """The matrix as a Markdown table (best per column in bold), with the tasks' metric and n underneath."""
    wide = matrix_table(cells)
    if wide.empty:
        return "_No leaderboard yet._"
    lines = ["| " + " | ".join(wide.columns) + " |", "|" + "---|" * len(wide.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in wide.itertuples(index=False)]
    models = cells[cells["kind"] == "model"]
    ns = models.groupby("task")["n"].max()
    lines.append("")
    lines.append("Test Spearman (graded tasks) or ROC-AUC (success tasks: the mean over the task's models' success labels, its CI resampling "
                 "questions), 95% bootstrap CI; test questions per task: " + ", ".join(f"{task} {int(n)}" for task, n in ns.items()) + ". Best per column in bold.")
    return "\n".join(lines)
