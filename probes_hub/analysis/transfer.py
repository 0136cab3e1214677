"""Cross-difficulty transfer: a probe trained on one difficulty bin's training questions, scored on every bin's test questions.

Bins come from a graded label (each value when it has few, e.g. MATH levels 1-5 or ARC grades; else quantiles of
the training rows). Within a bin that label is constant, so what is predicted is another label of the same
questions: by default ``success_rate``, the share of real models that solved each question (from the matching
``outcomes-`` dataset when the probe's own data lacks it). Each cell's probe is fitted on that bin's training rows
only (regularization by cross-validation inside them) and scored with a bootstrap CI on a test bin; the "all" row
is trained on every training row.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from probes_hub.analysis import DEFAULT_TRANSFER_LABEL
from probes_hub.analysis.target import ProbeTarget
from probes_hub.data.datasets import BUILTIN, load_dataset
from probes_hub.metrics import Metric, headline_metric
from probes_hub.probes.linear import DEFAULT_ALPHAS, DEFAULT_CS, fit_text_model, standardization

MAX_VALUE_BINS = 8
QUANTILE_BINS = 5
ALL = "all"


@dataclass
class TransferCell:
    """One (train bin, test bin) cell: the test metric with its CI and n, and how many training rows the probe had."""

    train_bin: str
    test_bin: str
    metric: Metric
    n_train: int


@dataclass
class TransferReport:
    """The train-bin x test-bin matrix plus the train-on-all row, and a summary of the off-diagonal cells."""

    probe: str
    model: str
    dataset: str
    bin_label: str
    label: str
    task: str
    layer: int
    position: int
    bins: list[str]
    cells: list[TransferCell]
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"train_bin": c.train_bin, "test_bin": c.test_bin, "metric": c.metric.name, "value": c.metric.value,
                              "low": c.metric.low, "high": c.metric.high, "n_test": c.metric.n, "n_train": c.n_train} for c in self.cells])

    def to_json(self) -> dict:
        return asdict(self)


def difficulty_bins(values: np.ndarray, is_train: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Bin names per row and their order: one bin per value when there are few, else quantile bins cut on the training rows."""
    known = values[~np.isnan(values)]
    unique = np.unique(known)
    if len(unique) <= MAX_VALUE_BINS:
        names = [f"{v:g}" for v in unique]
        return np.array([f"{v:g}" if not np.isnan(v) else "" for v in values]), names
    edges = np.quantile(values[is_train & ~np.isnan(values)], np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1])
    which = np.searchsorted(edges, values, side="right")
    names = [f"q{i + 1}" for i in range(QUANTILE_BINS)]
    return np.array([names[i] if not np.isnan(v) else "" for i, v in zip(which, values)]), names


def transfer_matrix(X: np.ndarray, y: np.ndarray, bins: np.ndarray, is_train: np.ndarray, order: list[str], task: str, *,
                    folds: int = 5, seed: int = 0) -> list[TransferCell]:
    """Fit on each bin's training rows (and on all of them), score on each bin's test rows; rows with an unknown label are left out."""
    known = ~np.isnan(y)
    cells = []
    for train_bin in [*order, ALL]:
        fit_rows = is_train & known & ((bins == train_bin) if train_bin != ALL else (bins != ""))
        predict = _fit(X[fit_rows], y[fit_rows], task, folds=folds, seed=seed)
        for test_bin in order:
            test_rows = ~is_train & known & (bins == test_bin)
            metric = _score(task, y[test_rows], predict(X[test_rows]) if predict else None)
            cells.append(TransferCell(train_bin, test_bin, metric, int(fit_rows.sum())))
    return cells


def _fit(X: np.ndarray, y: np.ndarray, task: str, *, folds: int, seed: int):
    """Standardize on the rows given, fit the linear model (CV inside them), return a predict function; None when the rows cannot be fitted."""
    smallest_class = int(min((y == 0).sum(), (y == 1).sum())) if task == "binary" else len(y)
    if len(y) < 3 or len(np.unique(y)) < 2 or smallest_class < 2:
        return None
    mean, scale = standardization(X, axis=0)
    coef, intercept, _ = fit_text_model((X - mean) / scale, y, task, alphas=DEFAULT_ALPHAS, cs=DEFAULT_CS, folds=min(folds, smallest_class), seed=seed)
    return lambda Z: ((Z - mean) / scale) @ coef + intercept[0]


def _score(task: str, y: np.ndarray, prediction: np.ndarray | None) -> Metric:
    name = "spearman" if task == "graded" else "roc_auc"
    if prediction is None or len(y) < 3 or len(np.unique(y)) < 2:
        return Metric(name, float("nan"), float("nan"), float("nan"), len(y))
    return headline_metric(task, y, prediction)


def summarize(cells: list[TransferCell], order: list[str]) -> dict:
    """Mean metric on the diagonal, below it (trained on easier bins than tested: easy -> hard) and above it, and of the all row."""
    rank = {name: i for i, name in enumerate(order)}
    groups: dict[str, list[float]] = {"diagonal": [], "easier_to_harder": [], "harder_to_easier": [], "all_bins": []}
    for cell in cells:
        if np.isnan(cell.metric.value):
            continue
        if cell.train_bin == ALL:
            groups["all_bins"].append(cell.metric.value)
            continue
        gap = rank[cell.test_bin] - rank[cell.train_bin]
        groups["diagonal" if gap == 0 else "easier_to_harder" if gap > 0 else "harder_to_easier"].append(cell.metric.value)
    return {f"mean_{name}": (float(np.mean(values)) if values else None) for name, values in groups.items()} | {
        f"cells_{name}": len(values) for name, values in groups.items()}


def labelled_frame(target: ProbeTarget, label: str, data_dir: str | None = None) -> pd.Series:
    """``label`` for each question of the probe's dataset: its own column, else the matching ``outcomes-`` dataset's, joined on the question text."""
    frame = target.dataset.frame
    if label in frame:
        return frame[label].astype(float)
    outcomes = f"outcomes-{target.dataset.name}"
    if outcomes not in BUILTIN:
        raise ValueError(f"{target.dataset.name} has no label {label!r} and no outcomes dataset; its labels: {', '.join(target.dataset.labels)}.")
    other = load_dataset(outcomes, data_dir=data_dir).frame
    if label not in other:
        raise ValueError(f"neither {target.dataset.name} nor {outcomes} has a label {label!r}.")
    return frame["question"].map(other.drop_duplicates("question").set_index("question")[label]).astype(float)


def analyze_transfer(target: ProbeTarget, *, label: str = DEFAULT_TRANSFER_LABEL, data_dir: str | None = None, folds: int = 5, seed: int = 0,
                     use_cache: bool = True, progress: bool = True) -> TransferReport:
    """The transfer matrix at the probe's (layer, position), bins from the probe's own label, ``label`` predicted."""
    from probes_hub.extract.feature_source import ModelFeatures

    started = time.time()
    dataset, record = target.dataset, target.probe.record_
    frame = dataset.frame
    y = labelled_frame(target, label, data_dir).to_numpy()
    task = "binary" if set(np.unique(y[~np.isnan(y)])) <= {0.0, 1.0} else "graded"
    is_train = (frame["split"] == "train").to_numpy()
    bins, order = difficulty_bins(frame[record.label.name].to_numpy(dtype=float), is_train)
    features, _ = ModelFeatures(target.lm).features(frame["question"].tolist(), [target.layer], chat=target.fmt.mode == "chat",
                                                    max_length=record.model.prompt.max_length, data_hash=dataset.content_hash,
                                                    use_cache=use_cache, progress=progress)
    cells = transfer_matrix(features.at(target.layer, target.position).astype(np.float64), y, bins, is_train, order, task, folds=folds, seed=seed)
    return TransferReport(target.name, target.lm.display_id, dataset.name, record.label.name, label, task, target.layer, target.position, order,
                          cells, summarize(cells, order), time.time() - started)


def transfer_charts(report: TransferReport) -> dict:
    """Train-bin x test-bin heatmap of the metric, with the value and n in each cell."""
    import altair as alt

    table = report.table()
    order = [*report.bins, ALL]
    base = alt.Chart(table).encode(x=alt.X("test_bin:O", sort=report.bins, title=f"test bin ({report.bin_label})"),
                                   y=alt.Y("train_bin:O", sort=order, title=f"train bin ({report.bin_label})"))
    heat = base.mark_rect().encode(color=alt.Color("value:Q", scale=alt.Scale(scheme="viridis"), title=table["metric"].iloc[0]),
                                   tooltip=["train_bin", "test_bin", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                                            alt.Tooltip("high:Q", format=".3f"), "n_test", "n_train"])
    text = base.mark_text(fontSize=10, color="white").encode(text=alt.Text("value:Q", format=".2f"))
    return {"transfer_heatmap": alt.layer(heat, text).properties(
        title=f"{report.label} predicted within {report.dataset} {report.bin_label} bins (layer {report.layer}, position {report.position})",
        width=360, height=300)}
