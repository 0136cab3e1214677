"""Multi-layer linear probes: EOI activations of a window of layers, averaged or concatenated, chosen by CV.

Difficulty is spread over many layers of a small model; reading several at once can average out each
layer's noise. Each layer is standardized, then a contiguous window of layers is averaged (any width) or
concatenated (narrow windows only: the features grow with the width). The window, the way it is combined,
the EOI position and the ridge alpha are chosen by the same k-fold CV on the training rows as
:class:`~probes_hub.probes.linear.LinearProbe`'s cells.
"""

from __future__ import annotations

import copy

import numpy as np

from probes_hub.extract.features import Features
from probes_hub.schema.records import ProbeConfig, Selection
from probes_hub.schema.validation import check_labels

from .linear import OOD_LEVELS, LinearProbe, ridge_fit, standardization, sweep

MEAN_WIDTHS = (2, 4, 8, 0)
"""Window widths searched for averaging (0: every layer given); windows start every ``max(1, width // 2)`` layers."""
CONCAT_WIDTHS = (2, 3)
"""Window widths searched for concatenation (non-overlapping windows, at the position the averaging search chose)."""


def layer_windows(n_layers: int, widths, *, overlapping: bool) -> list[tuple[int, ...]]:
    """Contiguous windows of layer indices ``[0, n_layers)`` for each width (0 or more than ``n_layers``: all of them)."""
    windows: list[tuple[int, ...]] = []
    for width in widths:
        width = n_layers if width <= 0 or width > n_layers else width
        step = max(1, width // 2) if overlapping else width
        for start in range(0, n_layers - width + 1, step):
            window = tuple(range(start, start + width))
            if window not in windows:
                windows.append(window)
    return windows


def _standardized_cumsum(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer mean and scale ``[L, P, D]`` over the rows, and the running sum over layers of the standardized
    activations ``[N, L + 1, P, D]`` (float32), so any window's average is one subtraction. One layer at a time in float64."""
    n, n_layers, n_positions, hidden = acts.shape
    mean, scale = np.zeros((n_layers, n_positions, hidden)), np.ones((n_layers, n_positions, hidden))
    cumulative = np.zeros((n, n_layers + 1, n_positions, hidden), dtype=np.float32)
    for li in range(n_layers):
        layer = acts[:, li].astype(np.float64)
        layer_mean, layer_scale = standardization(layer, axis=0)
        mean[li], scale[li] = layer_mean[0], layer_scale[0]
        cumulative[:, li + 1] = cumulative[:, li] + (layer - layer_mean) / layer_scale
    return mean, scale, cumulative


class MultiLayerProbe(LinearProbe):
    """Ridge (graded) or logistic (binary) regression on several layers' standardized EOI activations, averaged or concatenated.

    >>> probe = MultiLayerProbe(task="graded").fit(train_features, y)  # doctest: +SKIP
    >>> probe.selection_["layers"], probe.selection_["combine"]  # doctest: +SKIP
    """

    probe_type = "multilayer"
    preference = 11
    array_names = ("coef_", "intercept_", "mean_", "scale_", "window_mean_", "window_scale_")

    def fit(self, features: Features, y: np.ndarray) -> MultiLayerProbe:
        """Search windows x {mean, concat} x positions x alphas by k-fold CV; fit the best on every row given."""
        y = check_labels(np.asarray(y, dtype=np.float64), self.task)
        acts = features.activations
        if acts is None:
            raise ValueError("MultiLayerProbe needs activations at several layers; extract them first.")
        layer_mean, layer_scale, cumulative = _standardized_cumsum(acts)
        candidates = []
        for window in layer_windows(acts.shape[1], MEAN_WIDTHS, overlapping=True):
            averaged = (cumulative[:, window[-1] + 1] - cumulative[:, window[0]]) / len(window)  # [N, P, D]
            result = sweep(averaged[:, None], y, task=self.task, layers=(0,), positions=features.positions,
                           alphas=self.alphas, folds=self.cv_folds, seed=self.seed)
            _, pi, ai = result.best
            candidates.append((float(result.cv_scores[0, pi, ai]), window, "mean", pi, ai, result.metric))
        best_position = max(candidates, key=lambda c: c[0])[3]
        for window in layer_windows(acts.shape[1], CONCAT_WIDTHS, overlapping=False):
            if len(window) < 2:
                continue
            X = ((acts[:, list(window), best_position] - layer_mean[list(window), best_position]) / layer_scale[list(window), best_position]).reshape(len(y), -1)
            result = sweep(X[:, None, None], y, task=self.task, layers=(0,), positions=(features.positions[best_position],),
                           alphas=self.alphas, folds=self.cv_folds, seed=self.seed)
            _, _, ai = result.best
            candidates.append((float(result.cv_scores[0, 0, ai]), window, "concat", best_position, ai, result.metric))
        score, window, combine, pi, ai, metric = max(candidates, key=lambda c: c[0])
        layers = tuple(int(features.layers[i]) for i in window)
        self.window_mean_ = layer_mean[list(window), pi]
        self.window_scale_ = layer_scale[list(window), pi]
        self.selection_ = Selection(
            method=f"{self.cv_folds}-fold CV on the training rows ({metric} of pooled out-of-fold ridge predictions) over layer windows, "
                   "averaged or concatenated, positions and alphas",
            layer=layers[-1], position=int(features.positions[pi]), cv_score=score, cv_metric=metric,
            layers_searched=tuple(int(v) for v in features.layers), positions_searched=tuple(int(v) for v in features.positions),
            details={"layers": list(layers), "combine": combine, "alpha": float(self.alphas[ai]), "alphas_searched": list(self.alphas),
                     "candidates_searched": len(candidates)})
        X = self.inputs(features).astype(np.float64)
        self.mean_, self.scale_ = (v[0] for v in standardization(X))
        self.ood_quantiles_ = np.quantile(self._distance(X), OOD_LEVELS)
        if self.task == "graded":
            coef, intercept, _, _ = ridge_fit(X, y, float(self.alphas[ai]))
            self.coef_, self.intercept_ = coef, np.array([intercept])
        else:
            self._fit_logistic(X, y)
        self._record_fit(features, y)
        return self

    def fit_many(self, features: Features, Y: np.ndarray) -> list[MultiLayerProbe]:
        return [copy.deepcopy(self).fit(features, Y[:, t]) for t in range(Y.shape[1])]

    @property
    def window_layers(self) -> list[int]:
        return [int(v) for v in self.selection_["layers"]]

    def inputs(self, features: Features) -> np.ndarray:
        """The window's layers at the chosen position, each standardized, then averaged or concatenated: ``[N, d]``."""
        stacked = np.stack([features.at(layer, self.position) for layer in self.window_layers], axis=1)  # [N, w, D]
        stacked = (stacked - self.window_mean_) / self.window_scale_
        return stacked.mean(axis=1) if self.selection_["combine"] == "mean" else stacked.reshape(len(stacked), -1)

    def layers_needed(self) -> list[int]:
        return self.window_layers

    def layerwise(self, features: Features) -> None:
        return None

    def sweep_report(self, test_features: Features, y_test: np.ndarray) -> None:
        return None

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {name: np.asarray(getattr(self, name), dtype=np.float64) for name in self.array_names}
        arrays["ood_quantiles_"] = np.asarray(self.ood_quantiles_, dtype=np.float64)
        return arrays

    def _expected_shapes(self, config: ProbeConfig, arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        hidden = config.record.model.hidden_size
        width = len(config.selection.details.get("layers", ()))
        inputs = hidden if config.selection.details.get("combine") == "mean" else width * hidden
        return {"coef_": (inputs,), "intercept_": (1,), "mean_": (inputs,), "scale_": (inputs,), "window_mean_": (width, hidden),
                "window_scale_": (width, hidden), "ood_quantiles_": (len(OOD_LEVELS),)}
