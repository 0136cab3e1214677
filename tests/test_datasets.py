"""Built-in datasets from the shared data folder: uniform tables, fixed seeded splits, labels, clear errors."""

import numpy as np
import pandas as pd
import pytest

from probes_hub.data.datasets import load_dataset, resolve_data_dir, stratified_split


@pytest.mark.parametrize("name,rows,label,task", [
    ("gsm8k", 7473 + 1319, "steps", "graded"),
    ("math500", 500, "level", "graded"),
    ("arc-easy", 2376, "grade", "graded"),
    ("arc-challenge", 1172, "grade", "graded"),
    ("mmlu-pro", 12032, "correct:Meta-Llama-3_1-8B-Instruct", "binary"),
])
def test_builtin_tables_are_uniform(name, rows, label, task):
    dataset = load_dataset(name)
    frame = dataset.frame
    assert len(frame) == rows and frame["id"].is_unique
    assert list(frame.columns[:3]) == ["id", "question", "split"] and set(frame["split"]) == {"train", "test"}
    assert dataset.task(label) == task and frame[label].notna().sum() > 0.8 * rows


def test_splits_are_fixed_and_stratified():
    first, second = load_dataset("math500"), load_dataset("math500")
    assert (first.frame["split"] == second.frame["split"]).all() and first.content_hash == second.content_hash
    share = first.frame.groupby("level")["split"].apply(lambda s: (s == "train").mean())
    assert share.between(0.55, 0.65).all()
    assert (first.frame["split"] == "test").sum() == 200


def test_arc_numeric_answer_keys_become_letters():
    frame = load_dataset("arc-challenge").frame
    assert set(frame["answer"]) <= set("ABCDE") and frame["question"].str.contains("\nA. ").all()


def test_mmlu_pro_missing_outcomes_stay_missing():
    dataset = load_dataset("mmlu-pro")
    assert dataset.frame["correct:DeepSeek-Coder-V2"].isna().sum() == 12032 - 10351
    assert sum(label.startswith("correct:") for label in dataset.labels) == 29


def test_mmlu_pro_output_length_label_averages_the_recorded_lengths():
    dataset = load_dataset("mmlu-pro")
    assert dataset.task("log_output_chars") == "graded" and dataset.frame["log_output_chars"].notna().all()
    outcomes = pd.read_csv(resolve_data_dir() / "mmlu_pro" / "outcomes.csv")
    first = dataset.frame.iloc[0]
    chars = outcomes[(outcomes["question_id"].astype(str) == first["id"]) & (outcomes["output_chars"] > 0)]["output_chars"]
    assert first["log_output_chars"] == np.log(chars).mean()


def test_subset_keeps_each_rows_split():
    full = load_dataset("math500")
    part = full.subset(100)
    assert len(part.frame) == 100
    merged = part.frame.merge(full.frame[["id", "split"]], on="id", suffixes=("", "_full"))
    assert (merged["split"] == merged["split_full"]).all()


def test_missing_data_dir_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        load_dataset("math500", data_dir=tmp_path / "nowhere")


def test_unknown_dataset_and_label_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'mathh'"):
        load_dataset("mathh")
    with pytest.raises(KeyError, match="Available: level"):
        load_dataset("math500").task("levle")


def test_local_file_with_own_split(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "hard": [0, 1, 0, 1], "split": ["train", "train", "test", "test"]}).to_csv(path, index=False)
    dataset = load_dataset(str(path), question_column="text", label_columns=["hard"])
    assert dataset.labels == {"hard": "binary"} and list(dataset.frame["split"]) == ["train", "train", "test", "test"]


def test_stratified_split_handles_singletons():
    split = stratified_split(pd.Series([1, 2, 2, 3, 3, 3, 3, 3]))
    assert set(split) <= {"train", "test"} and len(split) == 8


def test_label_patterns_and_shared_calibration_rows():
    from probes_hub.data.datasets import row_roles
    from probes_hub.train import resolve_labels

    dataset = load_dataset("mmlu-pro").subset(300)
    labels = resolve_labels(dataset, ("correct:Meta-Llama-3_1-8B*", "correct:Meta-Llama-3_1-8B-Instruct"))
    assert labels == ["correct:Meta-Llama-3_1-8B", "correct:Meta-Llama-3_1-8B-Instruct"]
    assert len(resolve_labels(dataset, ("correct:*",))) == 29
    with pytest.raises(ValueError, match="matches none"):
        resolve_labels(dataset, ("correct:gpt-9",))
    first, second = (row_roles(dataset, label) for label in labels)
    for role in ("fit", "calibration", "test"):
        np.testing.assert_array_equal(first[role], second[role])  # same questions for every fully known label
    assert not set(first["calibration"]) & set(first["fit"]) and not set(first["test"]) & set(first["fit"])
    assert abs(len(first["calibration"]) / (len(first["fit"]) + len(first["calibration"])) - 0.2) < 0.02
