"""Success probes for many target models that read one shared activation direction (for routing)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from probes_hub.extract.features import Features
from probes_hub.hub.records import BINARY, GRADED
from probes_hub.hub.validation import check_labels

from .linear import LinearProbe


class SharedDirectionProbe(LinearProbe):
    """Success probes for many target models that read one shared activation direction.

    ``fit_many`` fits a ridge direction to each question's *mean* success over all label columns (layer,
    position and alpha chosen by k-fold CV, exactly as for a graded :class:`LinearProbe`), then each
    label's own slope and offset on that one-dimensional score. With a few hundred training questions
    per model, the direction estimated from every model's outcomes is far less noisy than one direction
    per model, and the models' probabilities stay comparable across models, which routing needs.
    Saved and loaded like a linear probe (same arrays).
    """

    probe_type = "shared"
    preference = 0
    tasks = (BINARY,)

    def fit_many(self, features: Features, Y: np.ndarray) -> list[SharedDirectionProbe]:
        from sklearn.linear_model import LogisticRegression

        if self.task not in self.tasks:
            raise ValueError("'shared' probes predict success (binary labels); use 'linear' for graded labels.")
        Y = np.column_stack([check_labels(Y[:, t], BINARY) for t in range(Y.shape[1])])
        direction = LinearProbe(task=GRADED, alphas=self.alphas, cv_folds=self.cv_folds, seed=self.seed).fit(features, Y.mean(axis=1))
        score = direction.decision_function(features)[:, None]
        shared_state = {k: v for k, v in direction.__dict__.items() if k.endswith("_") and k not in ("calibration_", "record_")}
        probes = []
        for t in range(Y.shape[1]):
            logistic = LogisticRegression(C=1e6, max_iter=1000).fit(score, Y[:, t].astype(int))
            slope, offset = float(logistic.coef_[0, 0]), float(logistic.intercept_[0])
            probe = copy.deepcopy(self)
            probe.__dict__.update(copy.deepcopy(shared_state))
            probe.coef_ = slope * direction.coef_
            probe.intercept_ = np.array([slope * direction.intercept_[0] + offset])
            probe.selection_ = replace(direction.selection_,
                                       method=f"{self.cv_folds}-fold CV on the training rows of a ridge direction for the mean success of "
                                              f"{Y.shape[1]} label(s) (Spearman of pooled out-of-fold predictions); then this label's "
                                              "logistic slope and offset on that score",
                                       details={**direction.selection_.details, "shared_labels": int(Y.shape[1]), "slope": slope, "offset": offset})
            probe._record_fit(features, Y[:, t])
            probes.append(probe)
        return probes
