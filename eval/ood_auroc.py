"""Evaluation: does a probe's in-distribution score tell questions from a benchmark it never saw from its own?

For each probe below (bundled registry), its own test questions are the positives and questions of another
benchmark the negatives; the score is the probe's in-distribution score, the metric ROC-AUC with a
bootstrap 95% CI (1.0: every foreign question reads less typical than every own test question). Both
sides are seeded samples of at most ``--n`` questions. Ends with one line ``RESULT key=value ...``.

    python -m eval.ood_auroc [--quick] [--registry DIR] [--data-dir DIR]
"""

from __future__ import annotations

import argparse

import numpy as np

from eval import add_size_options, sized
from probes_hub.data.datasets import load_dataset, row_roles
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.models import load_model
from probes_hub.hub.registry import Registry
from probes_hub.metrics import auc_metric

CASES = (
    ("smollm2-135m-instruct--mmlu-pro--correct-meta-llama-3_1-8b-instruct--shared", ("gsm8k", "math500", "arc-challenge")),
    ("smollm2-135m-instruct--math500--level--linear", ("gsm8k", "arc-challenge", "mmlu-pro")),
    ("smollm2-135m-instruct--arc-challenge--grade--linear", ("gsm8k", "math500", "mmlu-pro")),
)
"""(probe, benchmarks it never saw)."""


def sample(questions: list[str], n: int, seed: int = 0) -> list[str]:
    rows = np.random.default_rng(seed).permutation(len(questions))[:n]
    return [questions[i] for i in sorted(rows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.ood_auroc", description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick="60 questions a side (about a minute on a CPU)", smoke="8 questions a side")
    parser.add_argument("--n", type=int, default=200, help="questions a side (default 200)")
    parser.add_argument("--registry", default=None, help="registry folder (default: the bundled one)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    n = sized(args, full=args.n, quick=60, smoke=8)
    registry, source = Registry(args.registry), ModelFeatures(load_model())
    results = {}
    for name, foreign in CASES:
        probe = registry.load(name)
        data = probe.record_.data
        own = load_dataset(data.dataset, data_dir=args.data_dir).subset(data.limit, seed=data.seed)
        test = row_roles(own, probe.record_.label.name, seed=data.seed)["test"]
        positives = sample(own.frame["question"].to_numpy()[test].tolist(), n)
        for benchmark in foreign:
            negatives = sample(load_dataset(benchmark, data_dir=args.data_dir).frame.query("split == 'test'")["question"].tolist(), n)
            features, _ = source.features(positives + negatives, [probe.layer])
            score = probe.in_distribution(features)
            metric = auc_metric(np.r_[np.ones(len(positives)), np.zeros(len(negatives))], score)
            key = f"{data.dataset}_vs_{benchmark}".replace("-", "_")
            results[key] = metric
            print(f"{name} | own {data.dataset} test vs {benchmark} test: {metric}")
    print("RESULT " + " ".join(f"{key}={metric.value:.3f}" for key, metric in results.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
