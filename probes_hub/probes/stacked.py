"""Stacked readings: the activation probe and the text-only readings combined by one linear model, so that one reading uses
the text signals *with* the activations instead of beside them, and its record says what the activations add.

Every input probe (``linear`` on the activations, ``length``, ``embedding``) is fitted within the training folds only and
predicts its held-out fold; the combiner (ridge for graded labels, logistic regression for success) is fitted on those
out-of-fold predictions, so it never sees a prediction made on a question the input probe trained on. Its CV score, with
and without the activation input, is recorded (``selection.details``); the inputs are then refitted on every training row.

Its ``cv_score`` is put on the scale the other probe types report, so that the app's choice by CV compares like with like:
theirs is the CV score of the cell their search picked (a little optimistic), while the stack's own out-of-fold score is
nested (each fold re-runs the activation probe's search). So the stack reports its activation probe's ``cv_score`` plus the
stack's gain over that probe's nested out-of-fold readings on the same folds (``gain_over_activation``; both nested scores are
in the details).
"""

from __future__ import annotations

import numpy as np

from probes_hub.extract.features import Features
from probes_hub.schema.records import BINARY, ProbeConfig, Selection
from probes_hub.schema.validation import check_labels

from .base import PROBE_TYPES, Probe
from .linear import DEFAULT_ALPHAS, DEFAULT_CS, cv_folds, fit_text_model

STACK_INPUTS = ("linear", "length", "embedding")
"""The default input probes, in the combiner's column order: the activation probe and the text-only readings. Without
``linear`` (e.g. ``("length", "tfidf", "embedding")``) the stack is text-only: the reference a stack with activations must beat."""
ACTIVATION_INPUT = "linear"
TEXT_STACK = "text_stack"
"""The name the evaluations give the text-only stack (a ``stacked`` probe over :data:`TEXT_STACK_INPUTS`)."""
TEXT_STACK_INPUTS = ("length", "tfidf", "embedding")
"""The text-only stack's inputs: the best a reading without activations can do by combining them the way ``stacked`` does."""


def reading_for_training(kind: str, task: str) -> Probe:
    """A fresh, unfitted reading of ``kind``: a probe type, or :data:`TEXT_STACK` for the text-only stack (what evaluations compare)."""
    if kind == TEXT_STACK:
        return StackedProbe(task=task, inputs=TEXT_STACK_INPUTS)
    return PROBE_TYPES[kind].for_training(task)


class StackedProbe(Probe):
    """A linear combination of an activation probe's and the text-only probes' readings, fitted on their out-of-fold predictions.

    >>> probe = StackedProbe(task="graded").fit(train_features, y)  # doctest: +SKIP
    >>> probe.selection_["activations_add"]  # CV score with the activation input minus without it  # doctest: +SKIP
    """

    probe_type = "stacked"
    preference = 5
    reads_activations = True
    array_names = ("coef_", "intercept_", "input_mean_", "input_scale_")

    def __init__(self, *, task: str = "graded", inputs=STACK_INPUTS, alphas=DEFAULT_ALPHAS, cs=DEFAULT_CS, cv_folds: int = 5, seed: int = 0):
        super().__init__(task=task)
        unknown = [kind for kind in inputs if kind not in PROBE_TYPES or kind == self.probe_type]
        if unknown or not inputs:
            raise ValueError(f"StackedProbe inputs must be probe types other than 'stacked'; got {list(inputs)}.")
        self.inputs = tuple(inputs)
        self.alphas = tuple(alphas)
        self.cs = tuple(cs)
        self.cv_folds = cv_folds
        self.seed = seed
        self.inputs_: dict[str, Probe] = {}

    def _new_input(self, kind: str) -> Probe:
        return PROBE_TYPES[kind].for_training(self.task, alphas=self.alphas, cs=self.cs, cv_folds=self.cv_folds, seed=self.seed)

    def out_of_fold(self, features: Features, y: np.ndarray) -> np.ndarray:
        """``[N, inputs]``: each input probe's decision value for each row, from a fit on the other folds only."""
        readings = np.zeros((len(y), len(self.inputs)))
        for train_rows, held_rows in cv_folds(y, self.task, self.cv_folds, self.seed):
            held = features.take(held_rows)
            for j, kind in enumerate(self.inputs):
                readings[held_rows, j] = self._new_input(kind).fit(features.take(train_rows), y[train_rows]).decision_function(held)
        return readings

    def fit(self, features: Features, y: np.ndarray) -> StackedProbe:
        values = check_labels(y, self.task)
        readings = self.out_of_fold(features, values)
        self.input_mean_, self.input_scale_ = readings.mean(axis=0), np.maximum(readings.std(axis=0), 1e-12)
        standardized = (readings - self.input_mean_) / self.input_scale_
        self.coef_, self.intercept_, combiner = self._combine(standardized, values)
        score = self._cv_score(standardized, values)
        self.inputs_ = {kind: self._new_input(kind).fit(features, values) for kind in self.inputs}
        details = {"inputs": list(self.inputs), "weights": [float(w) for w in self.coef_], **combiner.details, "cv_score_nested": score}
        activation = self.inputs_[ACTIVATION_INPUT].selection_ if ACTIVATION_INPUT in self.inputs_ else Selection()
        comparable = score
        if ACTIVATION_INPUT in self.inputs and len(self.inputs) > 1:
            text_only = [j for j, kind in enumerate(self.inputs) if kind != ACTIVATION_INPUT]
            without = self._cv_score(standardized[:, text_only], values)
            alone = self._score(values, readings[:, self.inputs.index(ACTIVATION_INPUT)])
            details.update({f"{ACTIVATION_INPUT}_{key}": value for key, value in activation.details.items()})
            details.update(cv_score_without_activations=without, activations_add=score - without, activation_cv_score_nested=alone,
                           gain_over_activation=score - alone)
            comparable = activation.cv_score + (score - alone)
        self.selection_ = Selection(
            method=f"stacked: {', '.join(self.inputs)} fitted within {self.cv_folds} folds, combined on their out-of-fold predictions "
                   f"({combiner.method}); CV score: the activation probe's own plus the combination's gain over it on the same folds",
            layer=activation.layer, position=activation.position, cv_metric="spearman" if self.task != BINARY else "roc_auc", cv_score=comparable,
            layers_searched=activation.layers_searched, positions_searched=activation.positions_searched, details=details)
        self._record_fit(features, y)
        return self

    def _combine(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, Selection]:
        return fit_text_model(X, y, self.task, alphas=self.alphas, cs=self.cs, folds=self.cv_folds, seed=self.seed)

    def _cv_score(self, X: np.ndarray, y: np.ndarray) -> float:
        """The score (:meth:`_score`) of the combiner's out-of-fold predictions over the stacking folds."""
        predicted = np.zeros(len(y))
        for train_rows, held_rows in cv_folds(y, self.task, self.cv_folds, self.seed):
            coef, intercept, _ = self._combine(X[train_rows], y[train_rows])
            predicted[held_rows] = X[held_rows] @ coef + intercept[0]
        return self._score(y, predicted)

    def _score(self, y: np.ndarray, predicted: np.ndarray) -> float:
        """Spearman (graded) or ROC-AUC (binary) of predictions made on rows they were not fitted on."""
        from scipy.stats import spearmanr
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(y.astype(int), predicted) if self.task == BINARY else spearmanr(y, predicted).statistic)

    def readings(self, features: Features) -> np.ndarray:
        """``[N, inputs]`` decision values of the refitted input probes."""
        return np.column_stack([self.inputs_[kind].decision_function(features) for kind in self.inputs])

    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        return ((self.readings(features) - self.input_mean_) / self.input_scale_) @ self.coef_ + self.intercept_[0]

    def in_distribution(self, features: Features) -> np.ndarray:
        reader = self.inputs_.get(ACTIVATION_INPUT)
        return reader.in_distribution(features) if reader is not None else super().in_distribution(features)

    # -- persistence: the input probes' arrays live in this probe's weights file, prefixed by their type ---------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._arrays()
        for kind, probe in self.inputs_.items():
            arrays.update({f"{kind}.{name}": value for name, value in probe._arrays().items()})
        return arrays

    def _load_arrays(self, arrays: dict[str, np.ndarray], config: ProbeConfig) -> None:
        super()._load_arrays({name: value for name, value in arrays.items() if "." not in name}, config)
        self.inputs_ = {}
        for kind in self.inputs:
            probe = self._new_input(kind)
            probe.record_, probe.selection_ = config.record, config.selection  # the activation input's layer and position
            probe._load_arrays(_inputs_arrays(arrays, kind), config)
            self.inputs_[kind] = probe

    def _expected_shapes(self, config: ProbeConfig, arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        n = len(self.inputs)
        shapes = {"coef_": (n,), "intercept_": (1,), "input_mean_": (n,), "input_scale_": (n,)}
        for kind in self.inputs:
            own = self._new_input(kind)._expected_shapes(config, _inputs_arrays(arrays, kind))
            shapes.update({f"{kind}.{name}": shape for name, shape in own.items()})
        return shapes


def _inputs_arrays(arrays: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    """One input probe's arrays, without their ``kind.`` prefix."""
    return {name.removeprefix(f"{kind}."): value for name, value in arrays.items() if name.startswith(f"{kind}.")}
