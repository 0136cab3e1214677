"""Bad command-line input is a usage error (exit 2) or a clear message naming what to change, never a silent default."""

import pytest

from probes_hub.cli import build_parser, main


@pytest.mark.parametrize("argv, message", [
    (["train", "--limit", "0"], "must be at least 1"),
    (["train", "--limit", "-5"], "must be at least 1"),
    (["train", "--layers", "5-2"], "runs backwards"),
    (["train", "--layers", "a"], "not a layer"),
    (["train", "--cv-folds", "1"], "at least 2"),
    (["label", "--k", "0"], "must be at least 1"),
    (["label", "--k", "x"], "not a whole number"),
    (["predict", "--probe", "p", "--limit", "0"], "must be at least 1"),
])
def test_bad_numbers_and_layer_ranges_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_layer_ranges_parse_ascending():
    assert build_parser().parse_args(["train", "--layers", "0-3, 8"]).layers == (0, 1, 2, 3, 8)


@pytest.mark.parametrize("lines, expected", [(['{"question": "What is 2 + 2?"}', '{"question": "  "}'], "question 2 .* is empty"),
                                             (['{"question": 5}'], r"question 1 .* is not text \(int\)")])
def test_empty_questions_are_refused_with_their_number(lines, expected, tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=expected):
        main(["predict", "--probe", str(tmp_path), "--file", str(path)])
    with pytest.raises(SystemExit, match="--question number 1 is empty"):
        main(["predict", "--probe", str(tmp_path), "--question", "  "])
