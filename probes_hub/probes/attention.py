"""Attention-pooling probes: learned queries attend over every prompt token's activations at one layer, then a linear head.

EOI probes read the last few tokens only; a question's difficulty may also sit in tokens the model has not
folded into them. ``heads`` queries each pool the standardized token activations with a softmax over the
question's tokens, and a linear head reads the pooled vectors (with zero queries the pooling is a plain mean,
which is where training starts). Trained with torch (AdamW) on CPU; a seeded validation share of the
training rows picks the epoch (early stopping) and the weight decay. Predicting needs numpy only.
"""

from __future__ import annotations

import time

import numpy as np

from probes_hub.extract.features import Features, TokenStates
from probes_hub.metrics import auc_rows, spearman_rows
from probes_hub.progress import progress_bar
from probes_hub.schema.records import GRADED, ProbeConfig, Selection
from probes_hub.schema.validation import check_labels

from .base import Probe

DEFAULT_WEIGHT_DECAYS = (0.01, 0.1, 1.0)
STANDARDIZE_CHUNK = 65536
"""Tokens per step when computing the per-dimension mean and scale (bounds the float64 copy)."""


class AttentionProbe(Probe):
    """Attention pooling over one layer's token activations + a linear head (ridge-like regression or logistic).

    The layer is the one the features' ``tokens`` were extracted at (the training pipeline picks it by the
    linear sweep's CV on the same training rows). ``selection_.cv_score`` is the validation score of the kept epoch.

    >>> probe = AttentionProbe(task="graded").fit(features_with_tokens, y)  # doctest: +SKIP
    """

    probe_type = "attention"
    preference = 12
    reads_activations = True
    reads_tokens = True
    array_names = ("query_", "value_", "intercept_", "mean_", "scale_")

    def __init__(self, *, task: str = GRADED, heads: int = 4, weight_decays=DEFAULT_WEIGHT_DECAYS, learning_rate: float = 2e-3,
                 max_epochs: int = 40, patience: int = 5, batch_size: int = 64, validation_fraction: float = 0.15, seed: int = 0):
        super().__init__(task=task)
        self.heads = heads
        self.weight_decays = tuple(weight_decays)
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.seed = seed

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, features: Features, y: np.ndarray) -> AttentionProbe:
        """Standardize the tokens, then for each weight decay train with early stopping on the validation rows; keep the best."""
        y = check_labels(np.asarray(y, dtype=np.float64), self.task)
        tokens = _require_tokens(features)
        started = time.time()
        self.mean_, self.scale_ = _token_standardization(tokens.values)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(y))
        n_validation = max(2, int(round(self.validation_fraction * len(y))))
        validation, train_rows = np.sort(order[:n_validation]), order[n_validation:]
        target = (y - y.mean()) / (y.std() or 1.0) if self.task == GRADED else y
        runs = [(decay, *self._train(tokens, target, train_rows, validation, y[validation], decay)) for decay in self.weight_decays]
        tried = [{"weight_decay": decay, "validation_score": score, "epochs": epochs} for decay, _, score, epochs in runs]
        chosen = int(np.argmax([t["validation_score"] for t in tried]))
        query, value, bias = runs[chosen][1]
        if self.task == GRADED:  # back to the label's scale: pred = std * head + mean
            spread = float(y.std() or 1.0)
            value, bias = value * spread, bias * spread + float(y.mean())
        self.query_, self.value_, self.intercept_ = query, value, np.array([bias])
        metric = "spearman" if self.task == GRADED else "roc_auc"
        self.selection_ = Selection(
            method=f"validation split ({self.validation_fraction:.0%} of the training rows, seeded): early stopping and weight decay",
            layer=tokens.layer, cv_metric=metric, cv_score=float(tried[chosen]["validation_score"]), layers_searched=(tokens.layer,),
            details={"weight_decay": tried[chosen]["weight_decay"], "epochs": tried[chosen]["epochs"], "tried": tried, "heads": self.heads,
                     "n_validation": int(len(validation)), "train_seconds": round(time.time() - started, 1)})
        self._record_fit(features, y)
        return self

    def _train(self, tokens: TokenStates, target: np.ndarray, train_rows: np.ndarray, validation: np.ndarray, y_validation: np.ndarray,
               decay: float) -> tuple[tuple[np.ndarray, np.ndarray, float], float, int]:
        """One AdamW run; returns the best epoch's ``(query, value, bias)``, its validation score and the epoch count."""
        import torch

        hidden = tokens.values.shape[1]
        generator = torch.Generator().manual_seed(self.seed)
        query = torch.zeros(self.heads, hidden, requires_grad=True)
        value = (torch.randn(self.heads, hidden, generator=generator) / hidden).requires_grad_()
        bias = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.AdamW([query, value, bias], lr=self.learning_rate, weight_decay=decay)
        loss_fn = torch.nn.MSELoss() if self.task == GRADED else torch.nn.BCEWithLogitsLoss()
        batches = _length_batches(tokens.lengths[train_rows], self.batch_size)
        rng = np.random.default_rng(self.seed)
        best, best_score, since_best, epochs = None, -np.inf, 0, 0
        bar = progress_bar(total=self.max_epochs, desc=f"Attention probe (weight decay {decay:g})", unit="epoch")
        for epoch in range(self.max_epochs):
            epochs = epoch + 1
            for batch in rng.permutation(len(batches)):
                rows = train_rows[batches[batch]]
                X, mask = self._standardized(tokens, rows)
                output = _forward_torch(torch.from_numpy(X), torch.from_numpy(mask), query, value, bias)
                loss = loss_fn(output, torch.from_numpy(target[rows]).float())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            state = (query.detach().numpy().copy(), value.detach().numpy().copy(), float(bias.detach()[0]))
            score = _score(self.task, y_validation, self._decide(tokens, validation, *state))
            bar.update(1)
            bar.set_postfix(validation=f"{score:.3f}")
            if score > best_score:
                best, best_score, since_best = state, score, 0
            else:
                since_best += 1
                if since_best >= self.patience:
                    break
        bar.close()
        return best, float(best_score), epochs

    # -- predicting ---------------------------------------------------------------------------------
    def decision_function(self, features: Features) -> np.ndarray:
        self._check_fitted()
        tokens = features.token_states(self.layer)
        return self._decide(tokens, np.arange(len(tokens)), self.query_, self.value_, float(self.intercept_[0]))

    def _decide(self, tokens: TokenStates, rows: np.ndarray, query: np.ndarray, value: np.ndarray, bias: float) -> np.ndarray:
        """The head's output for ``rows`` in numpy, batched by length."""
        out = np.zeros(len(rows))
        for batch in _length_batches(tokens.lengths[rows], 256):
            X, mask = self._standardized(tokens, rows[batch])
            out[batch] = _forward_numpy(X, mask, query, value, bias)
        return out

    def _standardized(self, tokens: TokenStates, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, mask = tokens.padded(rows)
        X = (X - self.mean_.astype(np.float32)) / self.scale_.astype(np.float32)
        return X * mask[..., None], mask

    def token_layer(self) -> int | None:
        return self.layer

    def layers_needed(self) -> list[int]:
        return []

    # -- persistence --------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name), dtype=np.float32 if name in ("query_", "value_") else np.float64) for name in self.array_names}

    def _load_arrays(self, arrays: dict[str, np.ndarray], config: ProbeConfig) -> None:
        super()._load_arrays(arrays, config)
        self.heads = int(self.query_.shape[0])

    def _expected_shapes(self, config: ProbeConfig, arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        hidden, heads = config.record.model.hidden_size, int(config.params.get("heads", 0))
        return {"query_": (heads, hidden), "value_": (heads, hidden), "intercept_": (1,), "mean_": (hidden,), "scale_": (hidden,)}


def _require_tokens(features: Features) -> TokenStates:
    if len(features.tokens) != 1:
        raise ValueError("AttentionProbe fits on every prompt token's activations at one layer; extract features with token_layers=[layer] "
                         f"(these carry {len(features.tokens)} layers).")
    return next(iter(features.tokens.values()))


def _token_standardization(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of all token rows (zeros replaced by 1), accumulated in chunks."""
    total = np.zeros(values.shape[1])
    squares = np.zeros(values.shape[1])
    for start in range(0, len(values), STANDARDIZE_CHUNK):
        chunk = values[start:start + STANDARDIZE_CHUNK].astype(np.float64)
        total += chunk.sum(axis=0)
        squares += (chunk ** 2).sum(axis=0)
    mean = total / max(len(values), 1)
    std = np.sqrt(np.maximum(squares / max(len(values), 1) - mean ** 2, 0.0))
    return mean, np.where(std > 0, std, 1.0)


def _length_batches(lengths: np.ndarray, size: int) -> list[np.ndarray]:
    """Positions into ``lengths`` grouped by similar length (little padding), ``size`` per group."""
    order = np.argsort(lengths, kind="stable")
    return [order[start:start + size] for start in range(0, len(order), size)]


def _forward_torch(X, mask, query, value, bias):
    """``X [B, T, D]``, ``mask [B, T]`` -> ``[B]``: softmax(X q / sqrt(D)) over the tokens per head, pooled, read by the head."""
    import torch

    scores = torch.einsum("btd,hd->bth", X, query) / X.shape[-1] ** 0.5
    weights = torch.softmax(scores.masked_fill(~mask[..., None], float("-inf")), dim=1)
    pooled = torch.einsum("bth,btd->bhd", weights, X)
    return torch.einsum("bhd,hd->b", pooled, value) + bias[0]


def _forward_numpy(X: np.ndarray, mask: np.ndarray, query: np.ndarray, value: np.ndarray, bias: float) -> np.ndarray:
    """:func:`_forward_torch` in numpy (what ``predict`` runs; no torch needed)."""
    scores = np.einsum("btd,hd->bth", X, query) / np.sqrt(X.shape[-1])
    scores = np.where(mask[..., None], scores, -np.inf)
    scores -= scores.max(axis=1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)
    pooled = np.einsum("bth,btd->bhd", weights, X)
    return np.einsum("bhd,hd->b", pooled, value) + bias


def _score(task: str, y: np.ndarray, prediction: np.ndarray) -> float:
    """Spearman (graded) or ROC-AUC (binary) of one prediction vector; NaN counts as the worst."""
    value = float(spearman_rows(y, prediction) if task == GRADED else auc_rows(y, prediction))
    return value if np.isfinite(value) else -np.inf

