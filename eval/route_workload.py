"""Benchmark: a real workload with known outcomes routed as a user would, through `probes-hub route-file`.

Builds a workload file of GSM8K test questions (questions no probe was trained on) with each pool model's recorded
correctness and answer length as ``correct:<model>`` / ``output_chars:<model>`` columns, then routes it at the pool's
default lambda. ``route-file`` prints the plan's expected accuracy and cost (from the probes) and its realised ones (from
the recorded outcomes), both as ratios to always using the pool's most accurate model, and ends with the RESULT line.

    python -m eval.route_workload [--quick] [--pool math] [--out runs/workloads] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from eval import add_size_options, sized
from probes_hub.atomic import atomic_write_text
from probes_hub.cli import main as cli_main
from probes_hub.data.datasets import load_dataset, resolve_data_dir
from probes_hub.data.outcomes import outcome_table
from probes_hub.routing.evaluate import load_pool
from probes_hub.routing.workload import CORRECT_PREFIX, OUTPUT_CHARS_PREFIX

BENCHMARK = "gsm8k"


def workload_frame(pool_name: str, limit: int, data_dir: str | None = None) -> pd.DataFrame:
    """GSM8K questions in the test split of the pool's dataset, answered by every model of the pool, with their outcome columns
    (the first ``limit``)."""
    pool = load_pool(pool_name)
    rows = outcome_table(resolve_data_dir(data_dir), BENCHMARK)
    rows = rows[rows["model"].isin(pool.names)]
    correct = rows.pivot(index="question_id", columns="model", values="correct")[pool.names]
    chars = rows.pivot(index="question_id", columns="model", values="output_chars")[pool.names]
    complete = correct.notna().all(axis=1) & (chars > 0).all(axis=1)
    questions = load_dataset(pool.dataset, data_dir=data_dir).frame.set_index("id")  # the split the pool's probes were trained with
    ids = [i for i in complete.index[complete] if questions.loc[_pool_id(pool.dataset, i), "split"] == "test"][:limit]
    frame = pd.DataFrame({"id": ids, "question": questions.loc[[_pool_id(pool.dataset, i) for i in ids], "question"].to_numpy()})
    for model in pool.names:
        frame[f"{CORRECT_PREFIX}{model}"] = correct.loc[ids, model].astype(int).to_numpy()
        frame[f"{OUTPUT_CHARS_PREFIX}{model}"] = chars.loc[ids, model].to_numpy()
    return frame


def _pool_id(dataset: str, question_id: str) -> str:
    """A GSM8K outcome question's id in the pool's dataset (``mixed`` prefixes the benchmark)."""
    return f"{BENCHMARK}:{question_id}" if dataset == "mixed" else question_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.route_workload", description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick="200 questions", smoke="16 questions")
    parser.add_argument("--pool", default="math", help="a bundled pool over GSM8K (math, math-no-o1) or such a pool file (default math)")
    parser.add_argument("--out", default="runs/workloads", help="folder for the workload file and the plan (default runs/workloads)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    frame = workload_frame(args.pool, sized(args, full=5000, quick=200, smoke=16), args.data_dir)
    out = Path(args.out)
    workload = out / f"{BENCHMARK}-test-{args.pool}-{len(frame)}.csv"
    atomic_write_text(workload, frame.to_csv(index=False))
    print(f"wrote {workload}: {len(frame)} GSM8K test questions with {frame.shape[1] - 2} outcome columns")
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    return cli_main(["route-file", "--pool", args.pool, "--file", str(workload), "--out", str(out / f"plan-{workload.stem}.csv"), *data])


if __name__ == "__main__":
    raise SystemExit(main())
