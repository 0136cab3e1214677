"""Spearman, ROC-AUC, ECE and MAE with n and a seeded percentile-bootstrap 95% CI.

Point estimates come from scipy / scikit-learn; the bootstrap uses vectorised rank formulas of the same
statistics (tests check they agree with the library values). scipy.stats and sklearn.metrics are imported
where they are used: predicting with probes (the app's start-up) never needs them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Metric:
    """A metric value with its bootstrap 95% CI and the number of questions it was computed on."""

    name: str
    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name}={self.value:.3f} [95% CI {self.low:.3f}, {self.high:.3f}] (n={self.n})"


def spearman_rows(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (last axis), ties averaged; NaN where a row is constant."""
    from scipy.stats import rankdata

    ry, rp = rankdata(y, axis=-1), rankdata(pred, axis=-1)
    ry = ry - ry.mean(-1, keepdims=True)
    rp = rp - rp.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ry * rp).sum(-1) / np.sqrt((ry**2).sum(-1) * (rp**2).sum(-1))


def auc_rows(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row (Mann-Whitney U from ranks, ties averaged); NaN where a row has one class."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=float)
    ranks = rankdata(score, axis=-1)
    n_pos = y.sum(-1)
    n_neg = y.shape[-1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def ece_rows(y: np.ndarray, prob: np.ndarray, *, bins: int = 10) -> np.ndarray:
    """Expected calibration error of each row (last axis), equal-width probability bins."""
    y, prob = np.atleast_2d(np.asarray(y, float)), np.atleast_2d(np.asarray(prob, float))
    n_rows, n = prob.shape
    which = np.clip(np.digitize(prob, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1) + bins * np.arange(n_rows)[:, None]
    size = n_rows * bins
    gap = np.bincount(which.ravel(), weights=(y - prob).ravel(), minlength=size).reshape(n_rows, bins)
    return np.abs(gap).sum(-1) / n  # sum over bins of (bin share) * |mean(y) - mean(p)| = |sum(y - p)| / n


def ece(y: np.ndarray, prob: np.ndarray, *, bins: int = 10) -> float:
    """Expected calibration error with equal-width probability bins."""
    return float(ece_rows(y, prob, bins=bins)[0])


def auc_resampled(y: np.ndarray, score: np.ndarray, index: np.ndarray) -> np.ndarray:
    """ROC-AUC of each resample ``index [B, n]`` without sorting per resample (same values as ``auc_rows(y[index], score[index])``).

    Scores are sorted once into tie groups; a resample only changes how many times each question counts, so
    AUC = sum over groups of positive weight x (negative weight below + half the tied negative weight) / (W+ W-).
    """
    return auc_weighted(y, score, resample_counts(index, len(y)))


def resample_counts(index: np.ndarray, n: int) -> np.ndarray:
    """How many times each of ``n`` questions appears in each resample ``index [B, n]``, as ``[B, n]`` floats."""
    n_boot = index.shape[0]
    return np.bincount((index + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)


def auc_weighted(y: np.ndarray, score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC for each row of question weights ``counts [B, n]`` (see :func:`auc_resampled`)."""
    y = np.asarray(y, float)
    order = np.argsort(score, kind="stable")
    sorted_score = np.asarray(score, float)[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    weights = counts[:, order]
    pos = np.add.reduceat(weights * y[order], starts, axis=1)  # [B, groups]
    neg = np.add.reduceat(weights * (1 - y[order]), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def bootstrap_ci(y, pred, row_statistic, *, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED, from_index=None) -> tuple[float, float]:
    """Percentile 95% CI of ``row_statistic`` over ``n_boot`` seeded resamples of the questions.

    ``from_index(y, pred, index)`` may compute the same per-resample values faster than ``row_statistic``.
    """
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    index = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    values = from_index(y, pred, index) if from_index is not None else row_statistic(y[index], pred[index])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def spearman_metric(y, pred, **kwargs) -> Metric:
    """Spearman correlation (graded labels) with CI and n."""
    from scipy.stats import spearmanr

    value = float(spearmanr(y, pred).statistic)
    return Metric("spearman", value, *bootstrap_ci(y, pred, spearman_rows, **kwargs), len(y))


def spearman_difference_metric(y, pred, other, *, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> Metric:
    """Spearman of ``pred`` minus Spearman of ``other`` with ``y``, with a paired bootstrap CI (the same resampled questions for
    both), so "does this reading rank better than that one on these questions" has an interval of its own."""
    y, pred, other = (np.asarray(v, dtype=float) for v in (y, pred, other))
    value = float(spearman_rows(y, pred) - spearman_rows(y, other))
    index = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    values = spearman_rows(y[index], pred[index]) - spearman_rows(y[index], other[index])
    values = values[np.isfinite(values)]
    low, high = np.percentile(values, [2.5, 97.5]) if values.size else (float("nan"), float("nan"))
    return Metric("spearman_difference", value, float(low), float(high), len(y))


def auc_metric(y, score, **kwargs) -> Metric:
    """ROC-AUC (binary labels) with CI and n."""
    from sklearn.metrics import roc_auc_score

    value = float(roc_auc_score(np.asarray(y).astype(int), score))
    return Metric("roc_auc", value, *bootstrap_ci(y, score, auc_rows, from_index=auc_resampled, **kwargs), len(y))


def mean_auc_metric(y: np.ndarray, score: np.ndarray, *, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> Metric:
    """The mean ROC-AUC over labels (columns of ``y [n, L]``, NaN where a label is unknown or unscored) with a bootstrap CI that
    resamples questions (rows; one resample for every label, so the labels' shared questions move together); n: questions."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    known = np.isfinite(y) & np.isfinite(score)
    counts = resample_counts(np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y))), len(y))
    values, resampled = [], []
    for column in range(y.shape[1]):
        rows = known[:, column]
        values.append(auc_rows(y[rows, column], score[rows, column]))
        resampled.append(auc_weighted(y[rows, column], score[rows, column], counts[:, rows]))
    with np.errstate(invalid="ignore"):
        means = np.nanmean(np.array(resampled), axis=0)
    means = means[np.isfinite(means)]
    low, high = np.percentile(means, [2.5, 97.5]) if means.size else (float("nan"), float("nan"))
    return Metric("mean_roc_auc", float(np.nanmean(values)), float(low), float(high), int(known.any(axis=1).sum()))


def ece_metric(y, prob, **kwargs) -> Metric:
    """ECE with a bootstrap CI."""
    return Metric("ece", ece(y, prob), *bootstrap_ci(y, prob, ece_rows, **kwargs), len(y))


def mae_metric(y, pred, **kwargs) -> Metric:
    """Mean absolute error with a bootstrap CI."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return Metric("mae", float(np.abs(y - pred).mean()), *bootstrap_ci(y, pred, lambda a, b: np.abs(a - b).mean(-1), **kwargs), len(y))


def mean_metric(values, name: str = "mean", **kwargs) -> Metric:
    """The mean of per-question values (answer lengths, reading shifts) with a bootstrap CI."""
    values = np.asarray(values, float)
    return Metric(name, float(values.mean()), *bootstrap_ci(values, values, lambda a, _: a.mean(-1), **kwargs), len(values))


def accuracy_metric(correct, **kwargs) -> Metric:
    """Share of correct answers with a bootstrap CI."""
    return mean_metric(correct, "accuracy", **kwargs)


def partial_spearman_rows(y: np.ndarray, pred: np.ndarray, control: np.ndarray) -> np.ndarray:
    """Partial Spearman of each row pair given ``control``: the correlation of the ranks of ``y`` and ``pred``
    once the ranks of ``control`` are regressed out of both (first-order partial correlation of the rank correlations).

    A prediction that is a monotone function of ``control`` (the length baseline itself) tells nothing beyond it: 0.
    """
    r_yp, r_yc, r_pc = spearman_rows(y, pred), spearman_rows(y, control), spearman_rows(pred, control)
    with np.errstate(invalid="ignore", divide="ignore"):
        partial = (r_yp - r_yc * r_pc) / np.sqrt((1 - r_yc**2) * (1 - r_pc**2))
    return np.where(np.abs(r_pc) > 1 - 1e-12, 0.0, partial)


def partial_spearman_metric(y, pred, control, *, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> Metric:
    """Partial Spearman of a prediction with the label given ``control`` (e.g. prompt length), with a bootstrap CI and n.

    What a reading tells about the label beyond what ``control`` already does: 0 when the prediction is
    length in disguise.
    """
    y, pred, control = (np.asarray(v, dtype=float) for v in (y, pred, control))
    value = float(partial_spearman_rows(y, pred, control))
    index = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    values = partial_spearman_rows(y[index], pred[index], control[index])
    values = values[np.isfinite(values)]
    low, high = np.percentile(values, [2.5, 97.5]) if values.size else (float("nan"), float("nan"))
    return Metric("partial_spearman", value, float(low), float(high), len(y))


def headline_metric(task: str, y, pred) -> Metric:
    """The leaderboard metric for a task: Spearman for graded labels, ROC-AUC for binary ones."""
    return spearman_metric(y, pred) if task == "graded" else auc_metric(y, pred)
