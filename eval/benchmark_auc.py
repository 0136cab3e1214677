"""Evaluation: success probes trained on ``mixed``, scored on each benchmark's part of the test split.

For every model with a ``shared`` success probe on ``mixed`` in the registry: ROC-AUC with a bootstrap 95% CI
on the mixed test split and on each benchmark's test questions, for the saved probes (``shared``,
``tfidf``, ``embedding``) and the ``length`` baseline (refitted here on the same training rows, as at
training time; it is not saved in the registry, and its token counts need the probes' model). Reads saved
predictions, so nothing is re-extracted. Ends with one line ``RESULT key=value ...`` (mean AUC over models per benchmark and type).

    python -m eval.benchmark_auc [--quick] [--registry DIR] [--data-dir DIR]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from eval import add_size_options, sized
from probes_hub.data.datasets import BINARY, load_dataset, row_roles
from probes_hub.extract.features import Features
from probes_hub.hub.registry import Registry
from probes_hub.hub.reports import read_predictions
from probes_hub.metrics import auc_metric
from probes_hub.probes import PROBE_TYPES

SAVED = ("shared", "tfidf", "embedding")
TYPES = (*SAVED, "length")


def length_predictions(dataset, label: str, token_counts: np.ndarray) -> pd.Series:
    """The length baseline's predictions on every row, fitted on the label's fit rows (as ``train`` does)."""
    fit = row_roles(dataset, label)["fit"]
    features = Features(dataset.frame["question"].tolist(), token_counts)
    probe = PROBE_TYPES["length"].for_training(BINARY).fit(features.take(fit), dataset.frame[label].to_numpy(dtype=float)[fit])
    return pd.Series(probe.decision_function(features), index=dataset.frame["id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.benchmark_auc", description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick="the first 5 models only", smoke="the first model only")
    parser.add_argument("--registry", default=None, help="registry folder (default: the bundled one)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    registry = Registry(args.registry)
    dataset = load_dataset("mixed", data_dir=args.data_dir)
    frame = dataset.frame.set_index("id")
    labels = sorted({e.label for e in registry.list(dataset="mixed", probe_type="shared")})
    labels = [label for label in labels if all(registry.list(dataset="mixed", label=label, probe_type=t) for t in SAVED)]
    labels = labels[:sized(args, full=len(labels), quick=5, smoke=1)]
    token_counts = _token_counts(registry, labels[0], dataset)
    rows = []
    for label in labels:
        saved = {t: read_predictions(registry.folder(registry.entry(dataset="mixed", label=label, probe_type=t).name), data_dir=args.data_dir)
                 for t in SAVED}
        test_ids = saved["shared"].index[saved["shared"]["role"] == "test"]
        predictions = {t: saved[t]["prediction"] for t in SAVED} | {"length": length_predictions(dataset, label, token_counts)}
        for benchmark in ["all", *dict.fromkeys(frame.loc[test_ids, "benchmark"])]:
            ids = test_ids if benchmark == "all" else test_ids[frame.loc[test_ids, "benchmark"] == benchmark]
            y = frame.loc[ids, label].to_numpy(dtype=float)
            if len(set(y)) < 2:
                continue
            for kind in TYPES:
                metric = auc_metric(y, predictions[kind].loc[ids].to_numpy())
                rows.append({"model": label.removeprefix("correct:"), "benchmark": benchmark, "probe": kind, "auc": metric.value,
                             "low": metric.low, "high": metric.high, "n": metric.n})
    table = pd.DataFrame(rows)
    for benchmark, part in table.groupby("benchmark", sort=False):
        print(f"\n== {benchmark} test questions: ROC-AUC [95% CI], n per model {sorted(set(part['n']))}")
        cells = part.assign(cell=[f"{a:.3f} [{lo:.2f},{hi:.2f}]" for a, lo, hi in zip(part["auc"], part["low"], part["high"])])
        print(cells.pivot(index="model", columns="probe", values="cell")[list(TYPES)].to_string())
        means = part.groupby("probe")["auc"].mean()
        print("mean over models: " + ", ".join(f"{kind} {means[kind]:.3f}" for kind in TYPES))
        wins = part.pivot(index="model", columns="probe", values="auc")
        print(f"shared above every baseline for {int((wins['shared'] > wins[['tfidf', 'embedding', 'length']].max(axis=1)).sum())} of {len(wins)} models")
    means = table.groupby(["benchmark", "probe"])["auc"].mean()
    print("RESULT " + " ".join(f"{b}_{kind}={value:.3f}".replace("-", "_") for (b, kind), value in means.items()))
    return 0


def _token_counts(registry: Registry, label: str, dataset) -> np.ndarray:
    """Templated token counts of every question, from the tokenizer of the model the probes were trained on."""
    from probes_hub.apply import source_for_probe

    probe = registry.load(dataset="mixed", label=label, probe_type="shared")
    source = source_for_probe(probe)
    features, _ = source.features(dataset.frame["question"].tolist(), [], data_hash=dataset.content_hash, use_cache=True, progress=False)
    return features.token_counts


if __name__ == "__main__":
    raise SystemExit(main())
