"""Linear probes on activations with a fast, honest (layer, position, regularization) sweep.

Ridge solutions for every alpha come from one eigendecomposition per (fold, layer, position): with
standardized X and centred y, ``coef(alpha) = V diag(1 / (lambda + alpha)) V^T X^T y`` (primal form when
n > d, kernel form otherwise). The selection uses k-fold CV on the training rows only; binary labels are
screened with the same least-squares path (CV ROC-AUC), then a logistic regression's C is chosen by CV
at the selected (layer, position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold

from ..features import Features
from ..metrics import auc_rows, spearman_rows
from ..validation import check_feature_width, check_labels
from .base import Probe

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-1, 5, 13))
DEFAULT_CS = tuple(float(c) for c in np.logspace(-5, 0, 6))


def standardization(X: np.ndarray, axis: int = -2) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale (std, zeros replaced by 1) along the sample axis, as StandardScaler computes them."""
    mean = X.mean(axis=axis, keepdims=True)
    scale = X.std(axis=axis, keepdims=True)
    return mean, np.where(scale > 0, scale, 1.0)


def ridge_coefs(Xs: np.ndarray, yc: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Ridge coefficients ``[..., A, d]`` for standardized ``Xs [..., n, d]`` and centred ``yc [n]``, all alphas at once."""
    n, d = Xs.shape[-2:]
    alphas = np.asarray(alphas, dtype=np.float64)
    if n > d:
        eigval, eigvec = np.linalg.eigh(np.swapaxes(Xs, -1, -2) @ Xs)  # [..., d], [..., d, d]
        proj = np.einsum("...ji,...j->...i", eigvec, np.swapaxes(Xs, -1, -2) @ yc)  # V^T X^T y, [..., d]
        scaled = proj[..., None, :] / (eigval[..., None, :] + alphas[:, None])  # [..., A, d]
        return scaled @ np.swapaxes(eigvec, -1, -2)
    eigval, eigvec = np.linalg.eigh(Xs @ np.swapaxes(Xs, -1, -2))  # kernel form, [..., n]
    proj = np.swapaxes(eigvec, -1, -2) @ yc
    dual = (proj[..., None, :] / (eigval[..., None, :] + alphas[:, None])) @ np.swapaxes(eigvec, -1, -2)  # [..., A, n]
    return dual @ Xs


def ridge_path(X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray, alphas) -> np.ndarray:
    """Predictions ``[..., A, m]`` on ``X_eval [..., m, d]`` of ridge fits on ``X_train [..., n, d]`` for every alpha."""
    mean, scale = standardization(X_train)
    Xs = (X_train - mean) / scale
    y_mean = y_train.mean()
    coefs = ridge_coefs(Xs, y_train - y_mean, alphas)
    return ((X_eval - mean) / scale) @ np.swapaxes(coefs, -1, -2) + y_mean  # [..., m, A]


def ridge_fit(X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """One ridge fit: ``(coef, intercept, mean, scale)`` with ``pred = ((X - mean) / scale) @ coef + intercept``."""
    mean, scale = standardization(X)
    coef = ridge_coefs((X - mean) / scale, y - y.mean(), [alpha])[0]
    return coef, float(y.mean()), mean[0], scale[0]


def cv_folds(y: np.ndarray, task: str, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded k folds over the training rows (stratified for binary labels)."""
    splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if task == "binary" else KFold(k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y.astype(int) if task == "binary" else y))


@dataclass
class SweepResult:
    """CV scores ``[L, P, A]`` of every (layer, position, alpha) and the chosen indices."""

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


def sweep(acts: np.ndarray, y: np.ndarray, *, task: str, layers, positions, alphas=DEFAULT_ALPHAS, folds: int = 5, seed: int = 0) -> SweepResult:
    """k-fold CV of the ridge path for every (layer, position) of ``acts [N, L, P, D]``.

    Scores pooled out-of-fold predictions by Spearman (graded) or ROC-AUC (binary).
    """
    y = np.asarray(y, dtype=np.float64)
    n_layers, n_positions = acts.shape[1:3]
    oof = np.zeros((n_layers, n_positions, len(alphas), len(y)))
    for train_rows, eval_rows in cv_folds(y, task, folds, seed):
        for li in range(n_layers):
            X = np.swapaxes(acts[:, li], 0, 1).astype(np.float64)  # [P, N, D]
            predictions = ridge_path(X[:, train_rows], y[train_rows], X[:, eval_rows], alphas)  # [P, m, A]
            oof[li][..., eval_rows] = np.swapaxes(predictions, -1, -2)
    row_score = auc_rows if task == "binary" else spearman_rows
    scores = row_score(np.broadcast_to(y, oof.shape), oof)
    return SweepResult(tuple(layers), tuple(positions), tuple(alphas), scores, "roc_auc" if task == "binary" else "spearman")


class LinearProbe(Probe):
    """Ridge (graded) or logistic (binary) regression on standardized activations at one (layer, position).

    ``fit`` sweeps every layer and position present in the features and keeps the best by k-fold CV on
    the rows it is given. It also keeps, for the chosen position, the best ridge probe of every layer
    (``layer_coef_`` ...) so a question's reading can be drawn layer by layer.

    >>> probe = LinearProbe(task="graded").fit(train_features, y)  # doctest: +SKIP
    >>> probe.layer_, probe.position_  # doctest: +SKIP
    """

    probe_type = "linear"
    array_names = ("coef_", "intercept_", "mean_", "scale_", "layer_coef_", "layer_intercept_", "layer_mean_", "layer_scale_", "layer_index_")

    def __init__(self, *, task: str = "graded", alphas=DEFAULT_ALPHAS, cs=DEFAULT_CS, cv_folds: int = 5, seed: int = 0):
        super().__init__(task=task)
        self.alphas = tuple(alphas)
        self.cs = tuple(cs)
        self.cv_folds = cv_folds
        self.seed = seed

    @property
    def layer(self) -> int | None:
        return None if getattr(self, "layer_index_", None) is None else int(self.selection_["layer"])

    @property
    def position(self) -> int | None:
        return None if getattr(self, "layer_index_", None) is None else int(self.selection_["position"])

    def fit(self, features: Features, y: np.ndarray) -> "LinearProbe":
        y = check_labels(y, self.task)
        acts = features.activations
        if acts is None:
            raise ValueError("LinearProbe needs activations; extract them first.")
        self.sweep_ = sweep(acts, y, task=self.task, layers=features.layers, positions=features.positions, alphas=self.alphas, folds=self.cv_folds, seed=self.seed)
        li, pi, ai = self.sweep_.best
        layer, position, alpha = features.layers[li], features.positions[pi], self.alphas[ai]
        X = acts[:, li, pi].astype(np.float64)
        self.selection_ = {
            "method": f"{self.cv_folds}-fold CV on the training rows ({self.sweep_.metric} of pooled out-of-fold ridge predictions)",
            "layer": int(layer), "position": int(position), "alpha": float(alpha),
            "cv_score": float(self.sweep_.cv_scores[li, pi, ai]), "cv_metric": self.sweep_.metric,
            "layers_searched": [int(v) for v in features.layers], "positions_searched": [int(v) for v in features.positions],
            "alphas_searched": list(self.alphas),
        }
        if self.task == "graded":
            coef, intercept, self.mean_, self.scale_ = ridge_fit(X, y, alpha)
            self.coef_, self.intercept_ = coef, np.array([intercept])
        else:
            self._fit_logistic(X, y)
        best_alpha = self.sweep_.best_alpha_index()[:, pi]
        fits = [ridge_fit(acts[:, i, pi].astype(np.float64), y, self.alphas[best_alpha[i]]) for i in range(len(features.layers))]
        self.layer_coef_ = np.stack([f[0] for f in fits])
        self.layer_intercept_ = np.array([f[1] for f in fits])
        self.layer_mean_ = np.stack([f[2] for f in fits])
        self.layer_scale_ = np.stack([f[3] for f in fits])
        self.layer_index_ = np.array(features.layers, dtype=np.float64)
        return self

    def _fit_logistic(self, X: np.ndarray, y: np.ndarray) -> None:
        """Choose C by CV ROC-AUC at the selected cell, then fit on all rows given."""
        self.mean_, self.scale_ = (v[0] for v in standardization(X))
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
        self.selection_.update({"C": best_c, "cs_searched": list(self.cs), "cv_auc_by_C": scores,
                                "classifier": "logistic regression (C chosen by CV ROC-AUC at the selected cell)"})

    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        X = features.at(self.layer, self.position).astype(np.float64)
        check_feature_width(X, self.coef_.shape[0], type(self).__name__)
        return ((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_[0]

    def layerwise(self, features: Features) -> tuple[list[int], np.ndarray]:
        """Each layer's best probe read at the chosen position: ``(layers, [N, L])``."""
        self._check_fitted()
        layers = [int(v) for v in self.layer_index_]
        readings = [((features.at(layer, self.position) - self.layer_mean_[i]) / self.layer_scale_[i]) @ self.layer_coef_[i] + self.layer_intercept_[i]
                    for i, layer in enumerate(layers)]
        return layers, np.stack(readings, axis=1)

    def _fitted_config(self) -> dict:
        return {"selection": {**self.info.get("selection", {}), **self.selection_}}

    def _load_arrays(self, arrays: dict[str, np.ndarray], config: dict) -> None:
        super()._load_arrays(arrays, config)
        self.selection_ = config["selection"]

    def _expected_shapes(self, config: dict) -> dict[str, tuple[int, ...]]:
        hidden = config["model"]["hidden_size"]
        n_layers = len(config["selection"].get("layers_searched", []))
        return {"coef_": (hidden,), "intercept_": (1,), "mean_": (hidden,), "scale_": (hidden,),
                "layer_coef_": (n_layers, hidden), "layer_intercept_": (n_layers,), "layer_mean_": (n_layers, hidden),
                "layer_scale_": (n_layers, hidden), "layer_index_": (n_layers,)}
