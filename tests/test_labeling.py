"""Labelling: answer extraction and math-verify grading on known right/wrong answers; generation and log-likelihood on a tiny model."""

import json

import pandas as pd
import pytest

from probes_hub.data.datasets import QuestionSet
from probes_hub.data.labeling import GenerationOptions, answers_match, extract_answer, label_by_generation, label_by_loglik, summarize_completions


@pytest.mark.parametrize("predicted,gold,expected", [
    ("1/2", "0.5", True), ("\\frac{1}{2}", "0.5", True), ("0.5", "\\frac{1}{2}", True), ("\\dfrac{1}{2}", "1/2", True),
    ("72", "72.0", True), ("1,000", "1000", True), ("3", "4", False), ("\\frac{1}{3}", "0.5", False), (None, "4", False), ("", "4", False),
    ("2\\sqrt{2}", "\\sqrt{8}", True), ("x+1", "1+x", True),
])
def test_math_verify_grading(predicted, gold, expected):
    assert answers_match(predicted, gold) is expected


@pytest.mark.parametrize("text,answer", [
    ("She pays 5 + 13 = 18 dollars.\n#### 18", "18"),
    ("So the result is \\boxed{\\frac{3}{4}}. Done, 12 steps.", "\\frac{3}{4}"),
    ("nested \\boxed{\\frac{1}{\\sqrt{2}}} here", "\\frac{1}{\\sqrt{2}}"),
    ("First 3 apples, then 1,250 pears.", "1250"),
    ("no answer at all", None),
    ("3 * 4 = 12, so the answer is \\boxed{answer}", "12"),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_summary_counts_majority_and_pass_at_k():
    completions = {"a": [{"answer": "2", "correct": False, "output_tokens": 10}, {"answer": "2", "correct": False, "output_tokens": 20},
                         {"answer": "3", "correct": True, "output_tokens": 30}],
                   "b": [{"answer": None, "correct": False, "output_tokens": 5}]}
    table = summarize_completions(completions, ["a", "b", "c"]).set_index("id")
    assert table.loc["a"].tolist() == [3, pytest.approx(1 / 3), 0, 1, 20.0]
    assert table.loc["b", "pass_at_k"] == 0 and table.loc["b", "majority_vote_is_correct"] == 0 and "c" not in table.index


def test_generation_labels_are_written_and_resumed(tiny, tmp_path):
    frame = pd.DataFrame({"id": ["q1", "q2", "q3"], "question": ["what is one plus two", "how many apples", "find x"], "split": "test",
                          "final_answer": ["3", "2", "1"]})
    dataset = QuestionSet("toy", frame, {}, "none")
    options = GenerationOptions(k=2, max_new_tokens=6, batch_size=4)
    first = label_by_generation(tiny, QuestionSet("toy", frame.head(2), {}, "none"), tmp_path, options, answer_column="final_answer", progress=False)
    assert len(first) == 2 and (first["k"] == 2).all()
    lines_before = (tmp_path / "completions.jsonl").read_text().splitlines()
    table = label_by_generation(tiny, dataset, tmp_path, options, answer_column="final_answer", progress=False)
    lines = (tmp_path / "completions.jsonl").read_text().splitlines()
    assert lines[:4] == lines_before and len(lines) == 6  # resumed: only q3 was generated
    assert list(table.columns) == ["id", "k", "success_rate", "majority_vote_is_correct", "pass_at_k", "mean_output_tokens"]
    assert set(table["id"]) == {"q1", "q2", "q3"} and (table["mean_output_tokens"] <= 6).all()
    assert pd.read_csv(tmp_path / "labels.csv").shape == (3, 6) and all("text" in json.loads(line) for line in lines)


def test_loglik_labels_pick_an_option_per_question(tiny, tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "question": ["x", "y"], "stem": ["what is one plus two", "how many apples"], "split": "test",
                          "choices": [["three", "four"], ["one", "two", "ten"]], "answer": ["A", "C"]})
    table = label_by_loglik(tiny, QuestionSet("toy-mc", frame, {}, "none"), tmp_path, progress=False)
    assert table["gold"].tolist() == [0, 2] and set(table["pred"]) <= {0, 1, 2}
    assert table["correct"].tolist() == (table["pred"] == table["gold"]).astype(int).tolist()
    assert (tmp_path / "loglik_labels.csv").exists() and len(json.loads(table["logprobs"][1])) == 3


def test_a_base_model_generates_in_its_raw_prompt_format(tmp_path):
    """Generation builds prompts the way extraction does (LoadedModel.prompt_format): a base model without a chat template
    gets the raw question/answer prompt instead of failing on apply_chat_template."""
    from probes_hub.data.labeling import generation_prompts

    from .conftest import tiny_model

    lm = tiny_model()
    lm.tokenizer.chat_template, lm.chat = None, False
    fmt = lm.prompt_format()
    [ids] = generation_prompts(lm, ["how many apples"])
    assert fmt.mode == "raw" and ids[:len(fmt.prefix_ids)] == list(fmt.prefix_ids) and ids[-len(fmt.suffix_ids):] == list(fmt.suffix_ids)
    frame = pd.DataFrame({"id": ["q1", "q2"], "question": ["what is one plus two", "how many apples"], "split": "test", "final_answer": ["3", "2"]})
    table = label_by_generation(lm, QuestionSet("toy", frame, {}, "none"), tmp_path, GenerationOptions(k=1, max_new_tokens=4, batch_size=2),
                                answer_column="final_answer", progress=False)
    assert list(table["id"]) == ["q1", "q2"] and (table["mean_output_tokens"] <= 4).all()
