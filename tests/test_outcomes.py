"""Benchmarks with recorded outcomes load as datasets with stable splits that agree with the datasets they join."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from probes_hub.data.datasets import MMLU_PRO_SUBSET, load_dataset

SIZES = {"outcomes-gsm8k": (1319, 46), "outcomes-math500": (500, 70), "outcomes-math-l5": (721, 43), "outcomes-arc-challenge": (1470, 11)}


@pytest.mark.parametrize("name", list(SIZES))
def test_each_benchmark_loads_with_its_models_labels_and_a_stable_split(name):
    dataset = load_dataset(name)
    rows, models = SIZES[name]
    frame = dataset.frame
    assert len(frame) == rows and frame["id"].is_unique and frame["question"].str.len().min() > 10
    success = [label for label, task in dataset.labels.items() if task == "binary"]
    assert len(success) == models and all(label.startswith("correct:") for label in success)
    np.testing.assert_allclose(frame["success_rate"], np.nanmean(frame[success].to_numpy(dtype=float), axis=1))
    assert frame["split"].tolist() == load_dataset(name).frame["split"].tolist()  # seeded: the same on every load
    if "irt_difficulty" in dataset.labels:
        assert spearmanr(frame["irt_difficulty"], frame["success_rate"]).statistic < -0.9  # harder items, fewer successes


def test_questions_keep_the_split_of_the_dataset_they_join():
    math500 = load_dataset("math500").frame
    assert (load_dataset("outcomes-math500").frame["split"].to_numpy() == math500["split"].to_numpy()).all()
    level5 = load_dataset("outcomes-math-l5").frame
    joined = level5["stem"].isin(math500["question"])
    by_text = math500.set_index("question")["split"]
    assert joined.sum() == 74 and (level5.loc[joined, "split"].to_numpy() == level5.loc[joined, "stem"].map(by_text).to_numpy()).all()
    assert set(load_dataset("outcomes-gsm8k").frame["split"]) == {"test"}  # GSM8K's official test questions
    arc = load_dataset("arc-challenge").frame.drop_duplicates("stem", keep=False).set_index("stem")["split"]
    outcomes_arc = load_dataset("outcomes-arc-challenge").frame
    known = outcomes_arc["stem"].isin(arc.index) & outcomes_arc["question_id"].str.contains(".test.", regex=False)
    assert known.sum() >= 1100 and (outcomes_arc.loc[known, "split"] == outcomes_arc.loc[known, "stem"].map(arc)).mean() > 0.99


def test_math500_models_use_their_zero_shot_outcomes():
    from probes_hub.data.datasets import resolve_data_dir
    from probes_hub.data.outcomes import outcome_table

    table = outcome_table(resolve_data_dir(), "math500")
    assert set(table["setting"]) == {"zero-shot"} and table.groupby("model").size().eq(500).all()


def test_mixed_is_the_union_tagged_by_benchmark():
    mixed = load_dataset("mixed").frame
    counts = mixed["benchmark"].value_counts().to_dict()
    assert counts == {"mmlu-pro": MMLU_PRO_SUBSET, "arc-challenge": 1470, "gsm8k": 1319, "math-l5": 721, "math500": 500}
    assert mixed["id"].is_unique and mixed["success_rate"].between(0, 1).all()
    for benchmark, own in (("math500", load_dataset("outcomes-math500")), ("mmlu-pro", load_dataset("mmlu-pro").subset(MMLU_PRO_SUBSET))):
        part = mixed[mixed["benchmark"] == benchmark]
        assert part["split"].tolist() == own.frame["split"].tolist()  # the bundled registry's MMLU-Pro subset, each question in its split
        assert part["question"].tolist() == own.frame["question"].tolist()
