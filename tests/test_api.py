"""The one-call Python API on the real embedded model and the bundled registry."""

from __future__ import annotations

import pytest

import probes_hub
from probes_hub.hub.registry import Registry
from probes_hub.paths import BUNDLED_REGISTRY

pytestmark = pytest.mark.skipif(not (BUNDLED_REGISTRY / "manifest.json").exists(), reason="bundled registry not built")


def test_predict_returns_a_tidy_table_of_difficulty_and_success(smollm2):
    questions = ["What is 7 + 5?", "Let $f(n)$ be the number of ways to write $n$ as an ordered sum of 1s and 2s. Find $f(2024) \\bmod 1000$."]
    table = probes_hub.predict(questions, model=smollm2)
    assert list(table.columns[:6]) == ["question_index", "question", "reading", "dataset", "label", "value"]
    assert set(table["question_index"]) == {0, 1} and set(table["reading"]) == {"difficulty", "success"}
    level = table[(table["label"] == "level") & (table["dataset"] == "math500")].set_index("question_index")
    assert len(level) == 2 and (level["probe_type"] == "linear").all() and (level["test_n"] == 200).all()
    assert level["in_distribution"].between(0, 1).all()
    assert level.loc[1, "value"] > level.loc[0, "value"]  # the olympiad question reads harder than the sum
    read = Registry().list(dataset="math", label="level", model=smollm2.display_id)  # the probes this model's features are read by
    best_by_cv = max((e for e in read if e.cv_score is not None), key=lambda e: e.cv_score)
    math_level = table[(table["label"] == "level") & (table["dataset"] == "math")].set_index("question_index")
    assert (math_level["probe_type"] == best_by_cv.probe_type).all() and (math_level["test_n"] == 500).all()
    assert math_level.loc[1, "value"] > math_level.loc[0, "value"]
    success = table[table["reading"] == "success"]
    assert success["label"].str.startswith("correct:").all() and success["value"].between(0, 1).all()
    per_question = len(_success_labels())
    assert (success["probe_type"] == "shared").all() and success.groupby("question_index").size().tolist() == [per_question, per_question]
    math = success[(success["dataset"] == "mixed") & (success["label"] == "correct:o1-mini-2024-09-12")].set_index("question_index")["value"]
    assert math.loc[0] > 0.85 and math.loc[0] > math.loc[1]  # the strongest math model: the sum is safe, the olympiad problem less so


def test_predict_filters_labels_and_rejects_bad_input(smollm2):
    table = probes_hub.predict("What is 7 + 5?", label="correct:*", model=smollm2)
    assert len(table) == len(_success_labels()) and set(table["reading"]) == {"success"}
    with pytest.raises(ValueError, match="empty"):
        probes_hub.predict(["  "], model=smollm2)
    with pytest.raises(ValueError, match="No probe"):
        probes_hub.predict("What is 7 + 5?", label="no-such-label", model=smollm2)


def _success_labels() -> set[tuple[str, str]]:
    """(dataset, label) of the bundled registry's success probes: MMLU-Pro's 29 models, and on ``mixed`` the math pool's 27 and the
    MMLU-Pro pool's 25 (its fallback)."""
    labels = {(e.dataset, e.label) for e in Registry().list() if e.label.startswith("correct:")}
    assert len(labels) == 29 + 27 + 25
    return labels
