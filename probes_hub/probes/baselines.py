"""Baselines every activation probe must beat: prompt length and TF-IDF of the question text.

scikit-learn is imported where it is used, so loading other probes to predict does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..features import Features
from ..validation import ProbeValidationError, check_labels
from .base import Probe
from .linear import DEFAULT_ALPHAS, DEFAULT_CS, cv_folds

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer


class LengthProbe(Probe):
    """Linear (graded) or logistic (binary) model of log(token count of the templated prompt)."""

    probe_type = "length"
    array_names = ("coef_", "intercept_")

    def fit(self, features: Features, y: np.ndarray) -> "LengthProbe":
        y = check_labels(y, self.task)
        x = self._x(features)
        if self.task == "graded":
            slope, intercept = np.polyfit(x[:, 0], y, 1)
            self.coef_, self.intercept_ = np.array([slope]), np.array([intercept])
        else:
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=1e6, max_iter=1000).fit(x, y.astype(int))
            self.coef_, self.intercept_ = model.coef_[0].astype(float), model.intercept_.astype(float)
        return self

    @staticmethod
    def _x(features: Features) -> np.ndarray:
        return np.log(np.maximum(np.asarray(features.token_counts, dtype=np.float64), 1.0))[:, None]

    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        return self._x(features) @ self.coef_ + self.intercept_[0]

    def _expected_shapes(self, config: dict) -> dict[str, tuple[int, ...]]:
        return {"coef_": (1,), "intercept_": (1,)}


class TfidfProbe(Probe):
    """Ridge (graded) or logistic (binary) on TF-IDF of the question text; regularization chosen by CV.

    The vocabulary and idf values go to ``config.json`` (JSON), the linear weights to safetensors.
    """

    probe_type = "tfidf"
    array_names = ("coef_", "intercept_")

    def __init__(self, *, task: str = "graded", max_features: int = 20000, ngram_max: int = 2, min_df: int = 2,
                 alphas=DEFAULT_ALPHAS, cs=DEFAULT_CS, cv_folds: int = 5, seed: int = 0):
        super().__init__(task=task)
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.alphas = tuple(alphas)
        self.cs = tuple(cs)
        self.cv_folds = cv_folds
        self.seed = seed

    def _vectorizer(self, vocabulary: list[str] | None = None) -> TfidfVectorizer:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, self.ngram_max), min_df=self.min_df if vocabulary is None else 1,
                               max_features=self.max_features if vocabulary is None else None,
                               vocabulary=None if vocabulary is None else {t: i for i, t in enumerate(vocabulary)})

    def fit(self, features: Features, y: np.ndarray) -> "TfidfProbe":
        y = check_labels(y, self.task)
        vectorizer = self._vectorizer()
        X = vectorizer.fit_transform(features.questions)
        self.vocabulary_ = [t for t, _ in sorted(vectorizer.vocabulary_.items(), key=lambda kv: kv[1])]
        self.idf_ = vectorizer.idf_.astype(np.float64)
        self._vectorizer_cache = vectorizer
        from sklearn.linear_model import LogisticRegressionCV, RidgeCV

        if self.task == "graded":
            model = RidgeCV(alphas=self.alphas, cv=None).fit(X, y)
            self.coef_, self.intercept_ = model.coef_.astype(float), np.array([float(model.intercept_)])
            self.selection_ = {"method": "efficient leave-one-out CV on the training rows (RidgeCV)", "alpha": float(model.alpha_)}
        else:
            folds = cv_folds(y, "binary", self.cv_folds, self.seed)
            model = LogisticRegressionCV(Cs=list(self.cs), cv=folds, scoring="roc_auc", max_iter=5000, l1_ratios=(0.0,), use_legacy_attributes=False).fit(X, y.astype(int))
            self.coef_, self.intercept_ = model.coef_[0].astype(float), model.intercept_.astype(float)
            self.selection_ = {"method": f"{self.cv_folds}-fold CV ROC-AUC on the training rows (LogisticRegressionCV)", "C": float(model.C_)}
        return self

    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        vectorizer = getattr(self, "_vectorizer_cache", None)
        if vectorizer is None:
            vectorizer = self._vectorizer(self.vocabulary_)
            vectorizer.idf_ = self.idf_
            self._vectorizer_cache = vectorizer
        return np.asarray(vectorizer.transform(features.questions) @ self.coef_).ravel() + self.intercept_[0]

    def _fitted_config(self) -> dict:
        return {"selection": {**self.info.get("selection", {}), **self.selection_},
                "tfidf": {"vocabulary": self.vocabulary_, "idf": [float(v) for v in self.idf_]}}

    def _load_arrays(self, arrays: dict[str, np.ndarray], config: dict) -> None:
        super()._load_arrays(arrays, config)
        self.vocabulary_ = list(config["tfidf"]["vocabulary"])
        self.idf_ = np.asarray(config["tfidf"]["idf"], dtype=np.float64)
        self.selection_ = config["selection"]

    def _expected_shapes(self, config: dict) -> dict[str, tuple[int, ...]]:
        tfidf = config.get("tfidf") or {}
        vocab, idf = tfidf.get("vocabulary"), tfidf.get("idf")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab) or not isinstance(idf, list) or len(idf) != len(vocab):
            raise ProbeValidationError("tfidf probe config needs 'tfidf.vocabulary' (strings) and 'tfidf.idf' (numbers) of equal length.")
        return {"coef_": (len(vocab),), "intercept_": (1,)}
