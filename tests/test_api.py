"""The one-call Python API on the real embedded model and the bundled registry."""

from __future__ import annotations

import pytest

import probes_hub
from probes_hub.paths import BUNDLED_REGISTRY

pytestmark = pytest.mark.skipif(not (BUNDLED_REGISTRY / "manifest.json").exists(), reason="bundled registry not built")


def test_predict_returns_a_tidy_table_of_difficulty_and_success(smollm2):
    questions = ["What is 7 + 5?", "Let $f(n)$ be the number of ways to write $n$ as an ordered sum of 1s and 2s. Find $f(2024) \\bmod 1000$."]
    table = probes_hub.predict(questions, model=smollm2)
    assert list(table.columns[:6]) == ["question_index", "question", "reading", "dataset", "label", "value"]
    assert set(table["question_index"]) == {0, 1} and set(table["reading"]) == {"difficulty", "success"}
    level = table[(table["label"] == "level")].set_index("question_index")
    assert len(level) == 2 and (level["probe_type"] == "linear").all() and (level["test_n"] == 200).all()
    assert level["in_distribution"].between(0, 1).all()
    assert level.loc[1, "value"] > level.loc[0, "value"]  # the olympiad question reads harder than the sum
    success = table[table["reading"] == "success"]
    assert success["label"].str.startswith("correct:").all() and success["value"].between(0, 1).all()
    assert (success["probe_type"] == "shared").all() and success.groupby("question_index").size().tolist() == [29, 29]


def test_predict_filters_labels_and_rejects_bad_input(smollm2):
    table = probes_hub.predict("What is 7 + 5?", label="correct:*", model=smollm2)
    assert len(table) == 29 and set(table["reading"]) == {"success"}
    with pytest.raises(ValueError, match="empty"):
        probes_hub.predict(["  "], model=smollm2)
    with pytest.raises(ValueError, match="No probe"):
        probes_hub.predict("What is 7 + 5?", label="no-such-label", model=smollm2)
