"""Success probes for many target models that read one shared activation direction (for routing)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from probes_hub.extract.features import Features
from probes_hub.schema.records import BINARY, GRADED, Calibration
from probes_hub.schema.validation import check_labels

from .linear import LAYER_ARRAYS, LinearProbe

LINK_C = 1e4
"""Inverse L2 strength of the link's logistic regression: nearly unregularized, but finite when a model is almost always right."""


class SharedDirectionProbe(LinearProbe):
    """Success probes for many target models that read one shared activation direction: a one-parameter IRT model.

    ``fit_many`` fits a ridge direction to each question's empirical logit of success over the models that
    answered it (:func:`success_logit`; layer, position and alpha chosen by k-fold CV, exactly as for a
    graded :class:`LinearProbe`); that score is the question's easiness. Each model then gets its own offset (its ability) and all share one
    slope: ``P(model m right on q) = sigmoid(slope * score(q) + offset_m)``. Labels may be unknown on some
    rows (a model never ran a benchmark): the direction learns from every row, a model's offset only from
    its own. One slope fitted across benchmarks is what lets a model seen only on olympiad problems get
    sensible probabilities on grade-school ones; and the models' probabilities stay comparable, which
    routing needs. :func:`calibrate_jointly` recalibrates the same way (one slope, one offset per model)
    on held-out rows. Saved and loaded like a linear probe (same arrays).
    """

    probe_type = "shared"
    preference = 0
    tasks = (BINARY,)
    joint_fit = True

    def fit_many(self, features: Features, Y: np.ndarray, *, direction_target: np.ndarray | None = None) -> list[SharedDirectionProbe]:
        """One probe per column of ``Y [N, T]`` (NaN: unknown on that row). ``direction_target [N]`` (default: the
        rows' :func:`success_logit` over ``Y``) is what the direction is fitted to, e.g. over *all* of a dataset's models."""
        if self.task not in self.tasks:
            raise ValueError("'shared' probes predict success (binary labels); use 'linear' for graded labels.")
        Y = np.asarray(Y, dtype=float)
        for t in range(Y.shape[1]):
            check_labels(Y[np.isfinite(Y[:, t]), t], BINARY)
        target = success_logit(Y) if direction_target is None else np.asarray(direction_target, dtype=float)
        rows = np.flatnonzero(np.isfinite(target))
        direction = LinearProbe(task=GRADED, alphas=self.alphas, cv_folds=self.cv_folds, seed=self.seed).fit(features.take(rows), target[rows])
        score = direction.decision_function(features)
        slope, offsets = common_slope_logistic(np.repeat(score[:, None], Y.shape[1], axis=1), Y)
        shared_state = {k: v for k, v in direction.__dict__.items() if k.endswith("_") and k not in ("calibration_", "record_", *LAYER_ARRAYS)}
        probes = []
        for t in range(Y.shape[1]):
            known = np.isfinite(Y[:, t])
            probe = copy.deepcopy(self)
            probe.__dict__.update(copy.deepcopy(shared_state))
            probe.coef_ = slope * direction.coef_
            probe.intercept_ = np.array([slope * direction.intercept_[0] + offsets[t]])
            probe.selection_ = replace(direction.selection_,
                                       method=f"{self.cv_folds}-fold CV on the training rows of a ridge direction for the questions' logit of success "
                                              f"({len(rows)} rows); then one slope for all {Y.shape[1]} label(s) and this label's offset (1PL link)",
                                       details={**direction.selection_.details, "shared_labels": int(Y.shape[1]), "slope": slope, "offset": float(offsets[t])})
            probe._record_fit(features.take(np.flatnonzero(known)), Y[known, t])
            probes.append(probe)
        return probes


def success_logit(Y: np.ndarray) -> np.ndarray:
    """Each question's empirical logit of success over the models that answered it, ``log((k + 1/2) / (n - k + 1/2))``
    for k of n right (NaN for a question nobody answered).

    The probes' link is logistic in the score, so the score should be linear in the logit of success, not in
    the success rate, which saturates: on the rate, "answered by 95% of models" and "by 99%" look alike, and
    questions easier than any the probe was trained on are read as only a little easier.
    """
    known = np.isfinite(Y)
    n = known.sum(axis=1)
    k = np.where(known, Y, 0.0).sum(axis=1)
    return np.where(n > 0, np.log((k + 0.5) / np.maximum(n - k + 0.5, 0.5)), np.nan)


def common_slope_logistic(values: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """Fit ``P(Y[q, t] = 1) = sigmoid(slope * values[q, t] + offset_t)`` on the known (finite) cells of ``Y [N, T]``."""
    from sklearn.linear_model import LogisticRegression

    rows, cols = np.nonzero(np.isfinite(Y))
    X = np.zeros((len(rows), 1 + Y.shape[1]))
    X[:, 0] = values[rows, cols]
    X[np.arange(len(rows)), 1 + cols] = 1.0
    model = LogisticRegression(C=LINK_C, fit_intercept=False, max_iter=5000).fit(X, Y[rows, cols].astype(int))
    return float(model.coef_[0, 0]), model.coef_[0, 1:].astype(float)


def calibrate_jointly(probes: list[SharedDirectionProbe], features: Features, Y: np.ndarray, *, note: str) -> None:
    """Recalibrate shared probes on held-out rows ``Y [N, len(probes)]`` (NaN: unknown) with one slope and a per-label offset.

    A per-label Platt slope, fitted on a model's few held-out rows of one benchmark, would undo the shared
    slope that lets the probe extrapolate; a slope that would flip the ranking is clipped to 0, as for
    single probes.
    """
    values = np.column_stack([probe.decision_function(features) for probe in probes])
    a, offsets = common_slope_logistic(values, Y)
    clipped = a < 0
    for t, probe in enumerate(probes):
        known = np.isfinite(Y[:, t])
        if clipped:
            rate = float(np.clip(np.nanmean(Y[known, t]), 1e-6, 1 - 1e-6))
            probe.calibration_ = Calibration(0.0, float(np.log(rate / (1 - rate))), note, int(known.sum()), method="shared-slope platt",
                                             note=f"fitted slope {a:.3g} < 0 clipped to 0: no held-out signal")
        else:
            probe.calibration_ = Calibration(a, float(offsets[t]), note, int(known.sum()), method="shared-slope platt")
