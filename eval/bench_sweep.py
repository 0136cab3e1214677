"""Benchmark: the fast ridge sweep vs a plain scikit-learn loop on identical inputs.

Inputs are synthetic activations shaped like a MATH-500 sweep (n questions x layers x EOI positions x 576)
with a graded label planted in one cell. The sklearn loop refits StandardScaler + Ridge for every
(layer, position, alpha, fold); the fast sweep shares one eigendecomposition per (fold, layer, position).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from eval import add_size_options, sized
from probes_hub.probes.linear import DEFAULT_ALPHAS, cv_folds, sweep


def synthetic(n: int, layers: int, positions: int, hidden: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(1, 6, size=n).astype(float)
    acts = rng.normal(size=(n, layers, positions, hidden)).astype(np.float32)
    direction = rng.normal(size=hidden)
    for layer in range(layers):  # signal that peaks in the middle layer at the last position
        strength = 0.3 * np.exp(-((layer - layers // 2) ** 2) / 8)
        acts[:, layer, -1] += (strength * np.outer(y - y.mean(), direction)).astype(np.float32)
    return acts, y


def sklearn_sweep(acts: np.ndarray, y: np.ndarray, alphas, folds) -> np.ndarray:
    scores = np.zeros(acts.shape[1:3] + (len(alphas),))
    for li in range(acts.shape[1]):
        for pi in range(acts.shape[2]):
            X = acts[:, li, pi].astype(np.float64)
            for ai, alpha in enumerate(alphas):
                oof = np.zeros(len(y))
                for train_rows, eval_rows in folds:
                    scaler = StandardScaler().fit(X[train_rows])
                    model = Ridge(alpha=alpha).fit(scaler.transform(X[train_rows]), y[train_rows])
                    oof[eval_rows] = model.predict(scaler.transform(X[eval_rows]))
                scores[li, pi, ai] = spearmanr(y, oof).statistic
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_options(parser, quick="10 layers (under 3 minutes on CPU)", smoke="2 layers, 60 questions")
    parser.add_argument("-n", type=int, default=300, help="training questions (default 300, MATH-500's train split)")
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--positions", type=int, default=6)
    args = parser.parse_args()
    layers = sized(args, full=args.layers, quick=10, smoke=2)
    args.n = sized(args, full=args.n, quick=args.n, smoke=60)
    acts, y = synthetic(args.n, layers, args.positions, 576)
    alphas = DEFAULT_ALPHAS
    print(f"inputs: n={args.n}, layers={layers}, positions={args.positions}, hidden=576, alphas={len(alphas)}, folds=5")

    started = time.perf_counter()
    fast = sweep(acts, y, task="graded", layers=tuple(range(layers)), positions=tuple(range(args.positions)), alphas=alphas, folds=5, seed=0)
    fast_s = time.perf_counter() - started
    started = time.perf_counter()
    slow = sklearn_sweep(acts, y, alphas, cv_folds(y, "graded", 5, 0))
    slow_s = time.perf_counter() - started
    slow_best = tuple(int(i) for i in np.unravel_index(np.nanargmax(slow), slow.shape))
    same = int(fast.best == slow_best)
    print(f"fast sweep {fast_s:.2f} s, sklearn loop {slow_s:.1f} s, selection fast={fast.best} sklearn={slow_best}, "
          f"max |score diff| {np.nanmax(np.abs(fast.cv_scores - slow)):.1e}")
    print(f"RESULT sweep_speedup={slow_s / fast_s:.1f} same_selection={same}")


if __name__ == "__main__":
    main()
