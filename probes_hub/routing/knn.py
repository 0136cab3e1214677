"""The k-nearest-neighbour router baseline: each model's success rate on the k most similar training questions.

Router benchmarks find this a strong, simple text-only router; similarity is the cosine of MiniLM-L6 sentence
embeddings, and k is chosen by cross-validated Brier score on the training questions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probes_hub.extract.sentence_encoder import encode

NEIGHBOUR_COUNTS = (5, 10, 20, 50, 100)
"""The k values tried by cross-validation (those above the number of training questions are skipped)."""
CV_FOLDS = 5


@dataclass(frozen=True)
class KnnRouter:
    """A fitted kNN success predictor over the training questions' embeddings and outcomes ``[N, M]``."""

    k: int
    embeddings: np.ndarray
    outcomes: np.ndarray

    def predict(self, questions: list[str]) -> np.ndarray:
        """Each model's success rate on the k nearest training questions, ``[len(questions), M]``."""
        similarity = encode(questions) @ self.embeddings.T
        nearest = np.argpartition(-similarity, self.k - 1, axis=1)[:, :self.k]
        return self.outcomes[nearest].mean(axis=1)


def fit_knn(questions: list[str], outcomes: np.ndarray, *, seed: int = 0) -> KnnRouter:
    """Choose k by ``CV_FOLDS``-fold CV Brier score on these training questions, then keep them all as neighbours."""
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KNeighborsRegressor

    embeddings = encode(questions)
    ks = [k for k in NEIGHBOUR_COUNTS if k <= len(questions) * (CV_FOLDS - 1) // CV_FOLDS] or [1]
    search = GridSearchCV(KNeighborsRegressor(algorithm="brute", metric="cosine"), {"n_neighbors": ks}, scoring="neg_mean_squared_error",
                          cv=KFold(CV_FOLDS, shuffle=True, random_state=seed)).fit(embeddings, np.asarray(outcomes, dtype=float))
    return KnnRouter(int(search.best_params_["n_neighbors"]), embeddings, np.asarray(outcomes, dtype=float))
