"""Linear probes on activations with a fast, honest (layer, position, regularization) sweep.

Ridge solutions for every alpha come from one eigendecomposition per (fold, layer, position): with
standardized X and centred y, ``coef(alpha) = V diag(1 / (lambda + alpha)) V^T X^T y`` (primal form when
n > d, kernel form otherwise). The same decomposition serves many labels at once (``Y [n, T]``), so the
29 success labels of MMLU-Pro cost about as much as one. The selection uses k-fold CV on the training rows
only; binary labels are screened with the same least-squares path (CV ROC-AUC), then a logistic
regression's C is chosen by CV at the selected (layer, position). scikit-learn is imported by the fitting
code only; predicting needs numpy alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np

from probes_hub.extract.features import Features
from probes_hub.metrics import auc_rows, spearman_rows
from probes_hub.schema.records import ProbeConfig, Selection
from probes_hub.schema.validation import check_feature_width, check_labels

from .base import Probe

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-1, 5, 13))
DEFAULT_CS = tuple(float(c) for c in np.logspace(-5, 0, 6))
OOD_LEVELS = np.linspace(0.0, 1.0, 101)
"""Quantile levels of the training rows' distances that a fitted activation probe keeps (``ood_quantiles_``)."""


def standardization(X: np.ndarray, axis: int = -2) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale (std, zeros replaced by 1) along the sample axis, as StandardScaler computes them."""
    mean = X.mean(axis=axis, keepdims=True)
    scale = X.std(axis=axis, keepdims=True)
    return mean, np.where(scale > 0, scale, 1.0)


def ridge_coefs(Xs: np.ndarray, Yc: np.ndarray, alphas) -> np.ndarray:
    """Ridge coefficients for standardized ``Xs [..., n, d]`` and centred targets, every alpha at once.

    ``Yc [n]`` gives ``[..., A, d]``; ``Yc [n, T]`` gives ``[..., A, T, d]`` from the same decomposition.
    """
    n, d = Xs.shape[-2:]
    alphas = np.asarray(alphas, dtype=np.float64)
    Y = Yc[:, None] if Yc.ndim == 1 else Yc
    Xt = np.swapaxes(Xs, -1, -2)
    if n > d:
        eigval, eigvec = np.linalg.eigh(Xt @ Xs)  # [..., d], [..., d, d]
        proj = np.swapaxes(eigvec, -1, -2) @ (Xt @ Y)  # V^T X^T Y, [..., d, T]
        scaled = proj[..., None, :, :] / (eigval[..., None, :, None] + alphas[:, None, None])  # [..., A, d, T]
        coefs = eigvec[..., None, :, :] @ scaled
    else:
        eigval, eigvec = np.linalg.eigh(Xs @ Xt)  # kernel form, [..., n]
        proj = np.swapaxes(eigvec, -1, -2) @ Y  # [..., n, T]
        dual = eigvec[..., None, :, :] @ (proj[..., None, :, :] / (eigval[..., None, :, None] + alphas[:, None, None]))
        coefs = Xt[..., None, :, :] @ dual  # [..., A, d, T]
    coefs = np.swapaxes(coefs, -1, -2)  # [..., A, T, d]
    return coefs[..., 0, :] if Yc.ndim == 1 else coefs


def ridge_path(X_train: np.ndarray, Y_train: np.ndarray, X_eval: np.ndarray, alphas) -> np.ndarray:
    """Predictions on ``X_eval [..., m, d]`` of ridge fits on ``X_train [..., n, d]`` for every alpha.

    Shape ``[..., m, A]`` for ``Y_train [n]`` and ``[..., m, A, T]`` for ``Y_train [n, T]``.
    """
    mean, scale = standardization(X_train)
    y_mean = Y_train.mean(axis=0)
    coefs = ridge_coefs((X_train - mean) / scale, Y_train - y_mean, alphas)
    Xe = (X_eval - mean) / scale
    if Y_train.ndim == 1:
        return Xe @ np.swapaxes(coefs, -1, -2) + y_mean
    return np.einsum("...md,...atd->...mat", Xe, coefs) + y_mean


def ridge_fit(X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """One ridge fit: ``(coef, intercept, mean, scale)`` with ``pred = ((X - mean) / scale) @ coef + intercept``."""
    mean, scale = standardization(X)
    coef = ridge_coefs((X - mean) / scale, y - y.mean(), [alpha])[0]
    return coef, float(y.mean()), mean[0], scale[0]


def cv_folds(y: np.ndarray, task: str, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded k folds over the training rows (stratified for binary labels)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if task == "binary" else KFold(k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y.astype(int) if task == "binary" else y))


def fit_text_model(X, y: np.ndarray, task: str, *, alphas, cs, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray, Selection]:
    """The linear model of the text baselines on features ``X`` (dense or sparse): ridge with alpha by efficient
    leave-one-out CV (graded), or logistic regression with C by k-fold CV ROC-AUC (binary), on the given rows only.

    Returns ``(coef, intercept, selection)``.
    """
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV

    if task == "graded":
        model = RidgeCV(alphas=alphas, cv=None).fit(X, y)
        return (model.coef_.astype(float), np.array([float(model.intercept_)]),
                Selection(method="efficient leave-one-out CV on the training rows (RidgeCV)", details={"alpha": float(model.alpha_)}))
    model = LogisticRegressionCV(Cs=list(cs), cv=cv_folds(y, "binary", folds, seed), scoring="roc_auc", max_iter=5000, l1_ratios=(0.0,),
                                 use_legacy_attributes=False).fit(X, y.astype(int))
    return (model.coef_[0].astype(float), model.intercept_.astype(float),
            Selection(method=f"{folds}-fold CV ROC-AUC on the training rows (LogisticRegressionCV)", details={"C": float(model.C_)}))


def sweep_folds(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded, label-free k folds for the ridge sweep, so every label on the same rows shares them."""
    from sklearn.model_selection import KFold

    return list(KFold(k, shuffle=True, random_state=seed).split(np.zeros(n)))


@dataclass
class SweepResult:
    """CV scores ``[L, P, A]`` of every (layer, position, alpha) for one label, and the chosen indices."""

    layers: tuple[int, ...]
    positions: tuple[int, ...]
    alphas: tuple[float, ...]
    cv_scores: np.ndarray
    metric: str

    @property
    def best(self) -> tuple[int, int, int]:
        """Indices (layer, position, alpha) of the highest CV score; NaNs (constant folds) never win."""
        scores = np.where(np.isfinite(self.cv_scores), self.cv_scores, -np.inf)
        return tuple(int(i) for i in np.unravel_index(np.argmax(scores), scores.shape))

    def best_alpha_index(self) -> np.ndarray:
        """Per (layer, position): index of the best alpha, ``[L, P]``."""
        return np.argmax(np.where(np.isfinite(self.cv_scores), self.cv_scores, -np.inf), axis=-1)


def sweep_many(acts: np.ndarray, Y: np.ndarray, *, task: str, layers, positions, alphas=DEFAULT_ALPHAS, folds: int = 5, seed: int = 0) -> list[SweepResult]:
    """k-fold CV of the ridge path for every (layer, position) of ``acts [N, L, P, D]`` and every column of ``Y [N, T]``.

    Scores pooled out-of-fold predictions by Spearman (graded) or ROC-AUC (binary); one eigendecomposition
    per (fold, layer, position) serves all T labels.
    """
    Y = np.asarray(Y, dtype=np.float64)
    n_layers, n_positions = acts.shape[1:3]
    splits = sweep_folds(len(Y), folds, seed)
    row_score = auc_rows if task == "binary" else spearman_rows
    scores = np.zeros((n_layers, n_positions, len(alphas), Y.shape[1]))
    for li in range(n_layers):
        X = np.swapaxes(acts[:, li], 0, 1).astype(np.float64)  # [P, N, D]
        oof = np.zeros((n_positions, len(alphas), Y.shape[1], len(Y)))
        for train_rows, eval_rows in splits:
            predictions = ridge_path(X[:, train_rows], Y[train_rows], X[:, eval_rows], alphas)  # [P, m, A, T]
            oof[..., eval_rows] = np.moveaxis(predictions, 1, -1)
        scores[li] = row_score(np.broadcast_to(Y.T, oof.shape), oof)
    metric = "roc_auc" if task == "binary" else "spearman"
    return [SweepResult(tuple(layers), tuple(positions), tuple(alphas), scores[..., t], metric) for t in range(Y.shape[1])]


def sweep(acts: np.ndarray, y: np.ndarray, **kwargs) -> SweepResult:
    """:func:`sweep_many` for a single label ``y [N]``."""
    return sweep_many(acts, np.asarray(y, dtype=np.float64)[:, None], **kwargs)[0]


@dataclass
class CellFits:
    """Ridge fits on all training rows at every (layer, position), each at its CV-best alpha.

    ``coef [L, P, d]``, ``mean``/``scale [L, P, d]``, ``intercept`` scalar: what the layer-wise probes and
    the per-cell test report are read from. Kept in memory after ``fit``; not saved.
    """

    coef: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    intercept: float

    def predict(self, acts: np.ndarray) -> np.ndarray:
        """Predictions ``[L, P, N]`` of every cell's probe on ``acts [N, L, P, D]``."""
        return np.einsum("nlpd,lpd->lpn", (acts - self.mean) / self.scale, self.coef) + self.intercept


def cell_fits_many(acts: np.ndarray, Y: np.ndarray, sweeps: list[SweepResult]) -> list[CellFits]:
    """One :class:`CellFits` per column of ``Y``, sharing each (layer, position) eigendecomposition."""
    alphas = sweeps[0].alphas
    n_layers, n_positions, width = acts.shape[1], acts.shape[2], acts.shape[3]
    best = np.stack([s.best_alpha_index() for s in sweeps], axis=-1)  # [L, P, T]
    coef = np.zeros((Y.shape[1], n_layers, n_positions, width))
    means, scales = np.zeros((n_layers, n_positions, width)), np.zeros((n_layers, n_positions, width))
    y_mean = Y.mean(axis=0)
    for li in range(n_layers):
        X = np.swapaxes(acts[:, li], 0, 1).astype(np.float64)  # [P, N, D]
        mean, scale = standardization(X)
        means[li], scales[li] = mean[:, 0], scale[:, 0]
        coefs = ridge_coefs((X - mean) / scale, Y - y_mean, alphas)  # [P, A, T, d]
        for t in range(Y.shape[1]):
            coef[t, li] = coefs[np.arange(n_positions), best[li, :, t], t]
    return [CellFits(coef[t], means, scales, float(y_mean[t])) for t in range(Y.shape[1])]


LAYER_ARRAYS = ("layer_coef_", "layer_intercept_", "layer_mean_", "layer_scale_", "layer_index_")
"""A graded probe's per-layer probes at its position, for the layer-wise reading. They only draw a chart, so they are kept
(and saved) in float32: half the size of a probe file, and a loaded probe reads them exactly as the fitted one did."""
LAYER_DTYPE = np.float32


class LinearProbe(Probe):
    """Ridge (graded) or logistic (binary) regression on standardized activations at one (layer, position).

    ``fit`` sweeps every layer and position present in the features and keeps the best by k-fold CV on
    the rows it is given. Graded probes also keep, for the chosen position, the best ridge probe of every
    layer (``layer_coef_`` ...) so a question's reading can be drawn layer by layer (binary probes do not: a
    success probability per layer is shown nowhere, and those arrays were most of a file). ``fit_many`` fits one probe
    per label column on shared rows at the cost of about one.

    >>> probe = LinearProbe(task="graded").fit(train_features, y)  # doctest: +SKIP
    >>> probe.layer, probe.position  # doctest: +SKIP
    """

    probe_type = "linear"
    preference = 10
    reads_activations = True
    array_names = ("coef_", "intercept_", "mean_", "scale_")

    def __init__(self, *, task: str = "graded", alphas=DEFAULT_ALPHAS, cs=DEFAULT_CS, cv_folds: int = 5, seed: int = 0):
        super().__init__(task=task)
        self.alphas = tuple(alphas)
        self.cs = tuple(cs)
        self.cv_folds = cv_folds
        self.seed = seed

    def fit(self, features: Features, y: np.ndarray) -> LinearProbe:
        self.__dict__.update(self.fit_many(features, np.asarray(y)[:, None])[0].__dict__)
        self._record_fit(features, y)
        return self

    def fit_many(self, features: Features, Y: np.ndarray) -> list[LinearProbe]:
        """One fitted copy of this probe per column of ``Y [N, T]`` (every label known on every row)."""
        Y = np.column_stack([check_labels(Y[:, t], self.task) for t in range(Y.shape[1])])
        acts = features.activations
        if acts is None:
            raise ValueError("LinearProbe needs activations; extract them first.")
        sweeps = sweep_many(acts, Y, task=self.task, layers=features.layers, positions=features.positions, alphas=self.alphas,
                            folds=self.cv_folds, seed=self.seed)
        cells = cell_fits_many(acts, Y, sweeps)
        probes = [copy.deepcopy(self)._fit_from_sweep(acts, Y[:, t], sweeps[t], cells[t]) for t in range(Y.shape[1])]
        for t, probe in enumerate(probes):
            probe._record_fit(features, Y[:, t])
        return probes

    def _fit_from_sweep(self, acts: np.ndarray, y: np.ndarray, result: SweepResult, cells: CellFits) -> LinearProbe:
        """Set the fitted state from a finished sweep: the chosen cell's probe plus every layer's probe at its position."""
        li, pi, ai = result.best
        self.sweep_, self.cells_ = result, cells
        self.selection_ = Selection(
            method=f"{self.cv_folds}-fold CV on the training rows ({result.metric} of pooled out-of-fold ridge predictions)",
            layer=int(result.layers[li]), position=int(result.positions[pi]), cv_score=float(result.cv_scores[li, pi, ai]),
            cv_metric=result.metric, layers_searched=tuple(int(v) for v in result.layers), positions_searched=tuple(int(v) for v in result.positions),
            details={"alpha": float(self.alphas[ai]), "alphas_searched": list(self.alphas)})
        self.mean_, self.scale_ = cells.mean[li, pi], cells.scale[li, pi]
        self.summarize_training(acts[:, li, pi])
        if self.task == "graded":
            self.coef_, self.intercept_ = cells.coef[li, pi], np.array([cells.intercept])
        else:
            self._fit_logistic(acts[:, li, pi].astype(np.float64), y)
        if self.task == "graded":
            self.layer_coef_ = cells.coef[:, pi].astype(LAYER_DTYPE)
            self.layer_intercept_ = np.full(len(result.layers), cells.intercept, dtype=LAYER_DTYPE)
            self.layer_mean_, self.layer_scale_ = cells.mean[:, pi].astype(LAYER_DTYPE), cells.scale[:, pi].astype(LAYER_DTYPE)
            self.layer_index_ = np.array(result.layers, dtype=LAYER_DTYPE)
        return self

    def _fit_logistic(self, X: np.ndarray, y: np.ndarray) -> None:
        """Choose C by CV ROC-AUC at the selected cell, then fit on all rows given."""
        from sklearn.linear_model import LogisticRegression

        Xs = (X - self.mean_) / self.scale_
        folds = cv_folds(y, "binary", self.cv_folds, self.seed)
        scores = []
        for c in self.cs:
            oof = np.zeros(len(y))
            for train_rows, eval_rows in folds:
                model = LogisticRegression(C=c, max_iter=5000).fit(Xs[train_rows], y[train_rows])
                oof[eval_rows] = model.decision_function(Xs[eval_rows])
            scores.append(float(auc_rows(y, oof)))
        best_c = self.cs[int(np.nanargmax(scores))]
        model = LogisticRegression(C=best_c, max_iter=5000).fit(Xs, y)
        self.coef_, self.intercept_ = model.coef_[0], model.intercept_.astype(np.float64)
        self.selection_ = replace(self.selection_, details={**self.selection_.details, "C": best_c, "cs_searched": list(self.cs), "cv_auc_by_C": scores,
                                                             "classifier": "logistic regression (C chosen by CV ROC-AUC at the selected cell)"})

    def inputs(self, features: Features) -> np.ndarray:
        """The activations the probe reads, ``[N, d]``: its (layer, position) cell (subclasses combine several)."""
        return features.at(self.layer, self.position)

    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        X = self.inputs(features).astype(np.float64)
        check_feature_width(X, self.coef_.shape[0], type(self).__name__)
        return ((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_[0]

    def _distance(self, X: np.ndarray) -> np.ndarray:
        """Mean squared z-score of each row against the training rows' per-dimension mean and scale (a diagonal Mahalanobis distance)."""
        return np.mean(((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_) ** 2, axis=1)

    def summarize_training(self, X: np.ndarray) -> LinearProbe:
        """Keep the quantiles of the fit rows' distances (``X``: their activations at the probe's cell), for :meth:`in_distribution`."""
        self.ood_quantiles_ = np.quantile(self._distance(X), OOD_LEVELS)
        return self

    def in_distribution(self, features: Features) -> np.ndarray:
        """Share of the training questions whose activations lie farther from the training mean than each question's
        (1: as typical as they come, near 0: unlike anything the probe was trained on; NaN for probes saved without the summary)."""
        self._check_fitted()
        quantiles = getattr(self, "ood_quantiles_", None)
        if quantiles is None:
            return np.full(len(features), np.nan)
        distance = self._distance(self.inputs(features))
        return 1.0 - np.interp(distance, quantiles, OOD_LEVELS, left=0.0, right=1.0)

    def layerwise(self, features: Features) -> tuple[list[int], np.ndarray] | None:
        """Each layer's best probe read at the chosen position: ``(layers, [N, L])``, for the layers the features hold (serving
        extracts no deeper than the probes' chosen layers: :func:`probes_hub.apply.extraction_layers`). None for binary probes,
        which keep no per-layer probes."""
        self._check_fitted()
        if getattr(self, "layer_index_", None) is None:
            return None
        kept = [(i, int(layer)) for i, layer in enumerate(self.layer_index_) if int(layer) in features.layers]
        readings = [((features.at(layer, self.position).astype(np.float64) - self.layer_mean_[i]) / self.layer_scale_[i]) @ self.layer_coef_[i]
                    + self.layer_intercept_[i] for i, layer in kept]
        return [layer for _, layer in kept], np.stack(readings, axis=1) if readings else np.zeros((len(features), 0))

    def sweep_report(self, test_features: Features, y_test: np.ndarray) -> list[dict] | None:
        """CV and test score of every (layer, position) cell at its CV-best alpha (reported, never used for selection).

        Needs the sweep of this fit (not saved), so it is None for a loaded probe.
        """
        from probes_hub.metrics import headline_metric

        sweep = getattr(self, "sweep_", None)
        if sweep is None:
            return None
        best_alpha = sweep.best_alpha_index()
        test_predictions = self.cells_.predict(test_features.activations)  # [L, P, m]
        rows = []
        for li, layer in enumerate(sweep.layers):
            for pi, position in enumerate(sweep.positions):
                ai = best_alpha[li, pi]
                test = headline_metric(self.task, y_test, test_predictions[li, pi])
                rows.append({"layer": layer, "position": position, "alpha": sweep.alphas[ai], "cv_metric": sweep.metric,
                             "cv_score": float(sweep.cv_scores[li, pi, ai]), "test_score": test.value, "test_low": test.low, "test_high": test.high,
                             "test_n": test.n, "selected": (li, pi, ai) == sweep.best})
        return rows

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._arrays()
        if self.task == "graded":
            arrays.update({name: np.asarray(getattr(self, name)) for name in LAYER_ARRAYS})  # as fitted (float32) or as loaded
        if getattr(self, "ood_quantiles_", None) is not None:
            arrays["ood_quantiles_"] = np.asarray(self.ood_quantiles_, dtype=np.float64)
        return arrays

    def _expected_shapes(self, config: ProbeConfig, arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        hidden = config.record.model.hidden_size
        n_layers = len(config.selection.layers_searched)
        shapes = {"coef_": (hidden,), "intercept_": (1,), "mean_": (hidden,), "scale_": (hidden,)}
        if config.record.label.task == "graded" or "layer_index_" in arrays:  # binary probes saved before 0.3 kept them too
            shapes.update({"layer_coef_": (n_layers, hidden), "layer_intercept_": (n_layers,), "layer_mean_": (n_layers, hidden),
                           "layer_scale_": (n_layers, hidden), "layer_index_": (n_layers,)})
        if "ood_quantiles_" in arrays:  # optional: probes saved before the summary existed have none
            shapes["ood_quantiles_"] = (len(OOD_LEVELS),)
        return shapes
