"""The TF-IDF baseline every activation probe must beat: a linear model of the question's words alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probes_hub.extract.features import Features
from probes_hub.schema.records import GRADED, ProbeConfig
from probes_hub.schema.validation import ProbeValidationError, check_labels

from .base import Probe
from .linear import DEFAULT_ALPHAS, DEFAULT_CS, fit_text_model

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

MAX_TERMS = 200_000
"""Largest vocabulary a stored TF-IDF probe may hold (training keeps max_features=20,000): bounds the memory a loaded probe takes."""
TERM_SEPARATOR = "\n"
"""Joins the vocabulary's terms into one UTF-8 byte array (terms are words and word n-grams: never a newline)."""


class TfidfProbe(Probe):
    """Ridge (graded) or logistic (binary) on TF-IDF of the question text; regularization chosen by CV.

    Reads no model, so it applies to any model's questions. The vocabulary (UTF-8 bytes of the terms in
    column order), the idf values and the linear weights all go to ``model.safetensors``.
    """

    probe_type = "tfidf"
    preference = 20
    is_baseline = True
    display_name = "TF-IDF"
    model_bound = False
    array_names = ("coef_", "intercept_", "idf_", "vocabulary_")
    array_dtypes = {"idf_codes_": ("uint16", "uint32"), "vocabulary_": ("uint8",)}
    """In memory; on disk ``idf_`` is stored as its distinct values plus one small index per term (exact, a quarter the size)."""
    COEF_DTYPE = np.float32
    """The term weights are kept (and saved) in float32: tens of thousands per probe and one probe per model, so half the
    registry's size; the reading changes by ~1e-7 of its value, and a loaded probe reads exactly as the fitted one (a probe
    saved in float64 before keeps float64 when saved again, so re-saving never changes a reading)."""

    def __init__(self, *, task: str = GRADED, max_features: int = 20000, ngram_max: int = 2, min_df: int = 2,
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

    def fit(self, features: Features, y: np.ndarray) -> TfidfProbe:
        values = check_labels(y, self.task)
        vectorizer = self._vectorizer()
        X = vectorizer.fit_transform(features.questions)
        self.terms_ = [t for t, _ in sorted(vectorizer.vocabulary_.items(), key=lambda kv: kv[1])]
        self.idf_ = vectorizer.idf_.astype(np.float64)
        self._vectorizer_cache = vectorizer
        coef, self.intercept_, self.selection_ = fit_text_model(X, values, self.task, alphas=self.alphas, cs=self.cs, folds=self.cv_folds, seed=self.seed)
        self.coef_ = coef.astype(self.COEF_DTYPE)
        self._record_fit(features, y)
        return self

    @property
    def vocabulary_(self) -> np.ndarray | None:
        """The terms as one uint8 array (UTF-8, newline-separated): how the vocabulary is stored."""
        terms = getattr(self, "terms_", None)
        return None if terms is None else np.frombuffer(TERM_SEPARATOR.join(terms).encode("utf-8"), dtype=np.uint8)

    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        vectorizer = getattr(self, "_vectorizer_cache", None)
        if vectorizer is None:
            vectorizer = self._vectorizer(self.terms_)
            vectorizer.idf_ = self.idf_
            self._vectorizer_cache = vectorizer
        return np.asarray(vectorizer.transform(features.questions) @ self.coef_).ravel() + self.intercept_[0]

    def _arrays(self) -> dict[str, np.ndarray]:
        levels, codes = np.unique(np.asarray(self.idf_, dtype=np.float64), return_inverse=True)
        return {"coef_": np.asarray(self.coef_), "intercept_": np.asarray(self.intercept_, dtype=np.float64),
                "idf_levels_": levels, "idf_codes_": codes.astype(np.uint16 if len(levels) <= 65536 else np.uint32), "vocabulary_": self.vocabulary_}

    def _load_arrays(self, arrays: dict[str, np.ndarray], config: ProbeConfig) -> None:
        codes = arrays["idf_codes_"]
        if codes.dtype not in (np.uint16, np.uint32) or (len(codes) and int(codes.max()) >= len(arrays["idf_levels_"])):
            raise ProbeValidationError("tfidf idf_codes_ must be uint16/uint32 indices into idf_levels_.")
        self.coef_, self.intercept_, self.idf_ = arrays["coef_"], arrays["intercept_"], arrays["idf_levels_"][codes]
        self.terms_ = _decode_terms(arrays["vocabulary_"], len(self.idf_))

    def _upgrade_arrays(self, arrays: dict[str, np.ndarray], config: ProbeConfig) -> dict[str, np.ndarray]:
        """Version-1 configs kept the vocabulary and idf values in ``config.json``; they become arrays."""
        legacy = config.legacy.get("tfidf")
        if legacy is None:
            return arrays
        terms, idf = legacy.get("vocabulary"), legacy.get("idf")
        if not isinstance(terms, list) or not all(isinstance(t, str) and TERM_SEPARATOR not in t for t in terms) or not isinstance(idf, list):
            raise ProbeValidationError("tfidf probe config needs 'tfidf.vocabulary' (strings) and 'tfidf.idf' (numbers).")
        levels, codes = np.unique(np.asarray(idf, dtype=np.float64), return_inverse=True)
        return {**arrays, "idf_levels_": levels, "idf_codes_": codes.astype(np.uint32),
                "vocabulary_": np.frombuffer(TERM_SEPARATOR.join(terms).encode("utf-8"), dtype=np.uint8)}

    def _expected_shapes(self, config: ProbeConfig, arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        def length(name: str) -> int:
            array = arrays.get(name)
            return array.shape[0] if array is not None and array.ndim == 1 else -1

        n_terms = length("idf_codes_")
        if n_terms > MAX_TERMS:
            raise ProbeValidationError(f"tfidf probe holds {n_terms:,} terms; the limit is {MAX_TERMS:,} (train with a smaller max_features).")
        return {"coef_": (n_terms,), "intercept_": (1,), "idf_levels_": (length("idf_levels_"),), "idf_codes_": (n_terms,),
                "vocabulary_": (length("vocabulary_"),)}


def _decode_terms(vocabulary: np.ndarray, n_terms: int) -> list[str]:
    """The terms of a stored vocabulary array, checked against the number of idf values."""
    if vocabulary.dtype != np.uint8:
        raise ProbeValidationError(f"tfidf vocabulary_ must be uint8 (UTF-8 bytes), found {vocabulary.dtype}.")
    try:
        terms = bytes(vocabulary).decode("utf-8").split(TERM_SEPARATOR)
    except UnicodeDecodeError as error:
        raise ProbeValidationError(f"tfidf vocabulary_ is not UTF-8 text ({error}).") from error
    if len(terms) != n_terms or len(set(terms)) != n_terms:
        raise ProbeValidationError(f"tfidf vocabulary_ holds {len(terms)} terms ({len(set(terms))} distinct), but idf_ has {n_terms} values.")
    return terms
