"""One ability per model across benchmarks (the joint IRT scale of ``mixed``) against one scale per benchmark: which
predicts answers it has not seen better?

A seeded share of the observed (model, question) responses of ``mixed`` is hidden; both fits see the rest (abilities
from training questions only, as always) and predict the hidden ones. Per benchmark and over all: log-loss and ROC-AUC
of each (bootstrap 95% CI over the hidden responses, n of them), and the paired difference of log-loss (joint minus per-benchmark; below
0: the joint scale predicts better). GSM8K has no training questions and so no fit of its own: there, the per-benchmark
column is each question's success rate among the models whose answers are visible. Ends with
``RESULT joint_logloss=... per_benchmark_logloss=... delta_logloss=... delta_low=... delta_high=... joint_auc=... per_benchmark_auc=...
gsm8k_delta_logloss=...`` (the first keys over the benchmarks with a fit of their own).
"""

from __future__ import annotations

import argparse

import numpy as np

from eval import add_size_options, sized
from probes_hub.data.datasets import resolve_data_dir
from probes_hub.data.irt import fit_2pl
from probes_hub.data.outcomes import benchmark_models, load_mixed, response_matrix
from probes_hub.metrics import auc_metric, bootstrap_ci, mean_metric

HIDDEN_SHARE, SEED = 0.1, 0


def predicted(Y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """P(correct) of every (question, model) cell from a 2PL fit of ``Y`` (abilities from the ``train`` questions)."""
    fit = fit_2pl(Y, train)
    return 1 / (1 + np.exp(-fit.discrimination[:, None] * (fit.ability[None, :] - fit.difficulty[:, None])))


def per_benchmark(Y: np.ndarray, train: np.ndarray, benchmark: np.ndarray) -> np.ndarray:
    """P(correct) from one fit per benchmark (its own models and training questions), or each question's visible success rate
    where a benchmark has fewer than two training questions."""
    p = np.full(Y.shape, np.nan)
    for name in np.unique(benchmark):
        rows = benchmark == name
        columns = ~np.isnan(Y[rows]).all(axis=0)
        block = Y[np.ix_(rows, columns)]
        if train[rows].sum() >= 2:
            p[np.ix_(rows, columns)] = predicted(block, train[rows])
        else:
            p[np.ix_(rows, columns)] = np.clip(np.nanmean(block, axis=1, keepdims=True), 0.01, 0.99) * np.ones_like(block)
    return p


def log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def compare(name: str, y: np.ndarray, joint: np.ndarray, single: np.ndarray) -> dict[str, float]:
    """One table line: log-loss and AUC of both fits with CIs, and the paired log-loss difference."""
    lj, ls = mean_metric(log_loss(y, joint)), mean_metric(log_loss(y, single))
    aj, a1 = auc_metric(y, joint), auc_metric(y, single)
    loss_joint, loss_single = log_loss(y, joint), log_loss(y, single)
    delta = float((loss_joint - loss_single).mean())
    low, high = bootstrap_ci(loss_joint, loss_single, lambda a, b: (a - b).mean(-1))
    print(f"{name:<15} n={len(y):>6}  log-loss joint {lj.value:.4f} [{lj.low:.4f}, {lj.high:.4f}]  per-benchmark {ls.value:.4f} "
          f"[{ls.low:.4f}, {ls.high:.4f}]  delta {delta:+.4f} [{low:+.4f}, {high:+.4f}]  AUC joint {aj.value:.3f} [{aj.low:.3f}, {aj.high:.3f}]  "
          f"per-benchmark {a1.value:.3f} [{a1.low:.3f}, {a1.high:.3f}]")
    return {"joint_logloss": lj.value, "per_benchmark_logloss": ls.value, "delta_logloss": delta, "delta_low": low, "delta_high": high,
            "joint_auc": aj.value, "per_benchmark_auc": a1.value}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick="every question of mixed (the default; about a minute)", smoke="300 questions per benchmark")
    parser.add_argument("--data-dir", help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    root = resolve_data_dir(args.data_dir)
    table = load_mixed(root).frame
    per_question = sized(args, full=None, quick=None, smoke=300)
    if per_question:
        rng = np.random.default_rng(SEED)
        keep = [rng.choice(rows, min(len(rows), per_question), replace=False) for rows in table.groupby("benchmark").indices.values()]
        table = table.iloc[np.sort(np.concatenate(keep))].reset_index(drop=True)
    Y, names = response_matrix(table, benchmark_models(root))
    train, benchmark = (table["split"] == "train").to_numpy(), table["benchmark"].to_numpy()
    hidden = ~np.isnan(Y) & (np.random.default_rng(SEED).random(Y.shape) < HIDDEN_SHARE)
    visible = np.where(hidden, np.nan, Y)
    joint, single = predicted(visible, train), per_benchmark(visible, train, benchmark)
    print(f"mixed: {len(Y)} questions, {len(names)} models across benchmarks; {int(hidden.sum())} responses hidden ({HIDDEN_SHARE:.0%}, seed {SEED})")
    rows = np.broadcast_to(benchmark[:, None], Y.shape)[hidden]
    y, pj, ps = Y[hidden], joint[hidden], single[hidden]
    unfitted = [b for b in np.unique(benchmark) if train[benchmark == b].sum() < 2]
    lines = {name: compare(name + (" (rate)" if name in unfitted else ""), y[rows == name], pj[rows == name], ps[rows == name]) for name in np.unique(rows)}
    fitted = ~np.isin(rows, unfitted)
    result = compare("all fitted", y[fitted], pj[fitted], ps[fitted])
    result.update({f"{name}_delta_logloss": lines[name]["delta_logloss"] for name in unfitted})
    print("RESULT " + " ".join(f"{key}={value:.4f}" for key, value in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
