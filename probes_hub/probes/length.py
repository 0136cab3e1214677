"""The prompt-length baseline every activation probe must beat: how long the templated question is."""

from __future__ import annotations

import numpy as np

from probes_hub.extract.features import Features
from probes_hub.schema.records import GRADED, ProbeConfig, Selection
from probes_hub.schema.validation import check_labels

from .base import Probe


class LengthProbe(Probe):
    """Linear (graded) or logistic (binary) model of log(token count of the templated prompt).

    Bound to the model whose tokenizer and chat template counted the tokens.
    """

    probe_type = "length"
    preference = 30
    is_baseline = True
    display_name = "prompt length"
    array_names = ("coef_", "intercept_")

    def fit(self, features: Features, y: np.ndarray) -> LengthProbe:
        values = check_labels(y, self.task)
        x = self._x(features)
        if self.task == GRADED:
            slope, intercept = np.polyfit(x[:, 0], values, 1)
            self.coef_, self.intercept_ = np.array([slope]), np.array([intercept])
        else:
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=1e6, max_iter=1000).fit(x, values.astype(int))
            self.coef_, self.intercept_ = model.coef_[0].astype(float), model.intercept_.astype(float)
        self.selection_ = Selection(method="none (least squares or unregularized logistic regression on log token count)")
        self._record_fit(features, y)
        return self

    @staticmethod
    def _x(features: Features) -> np.ndarray:
        return np.log(np.maximum(np.asarray(features.token_counts, dtype=np.float64), 1.0))[:, None]

    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        return self._x(features) @ self.coef_ + self.intercept_[0]

    def _expected_shapes(self, config: ProbeConfig, arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        return {"coef_": (1,), "intercept_": (1,)}
