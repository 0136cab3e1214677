"""Bad command-line input is a usage error (exit 2) or a clear message naming what to change, never a silent default."""

import re

import pytest

from probes_hub.cli import build_parser, main
from probes_hub.paths import BUNDLED_REGISTRY


@pytest.mark.parametrize("argv, message", [
    (["train", "--limit", "0"], "must be at least 1"),
    (["train", "--limit", "-5"], "must be at least 1"),
    (["train", "--layers", "5-2"], "runs backwards"),
    (["train", "--layers", "a"], "not a layer"),
    (["train", "--cv-folds", "1"], "at least 2"),
    (["label", "--k", "0"], "must be at least 1"),
    (["label", "--k", "x"], "not a whole number"),
    (["predict", "--probe", "p", "--limit", "0"], "must be at least 1"),
    (["leaderboard", "--max-failed", "1.5"], "must be from 0 to 1"),
    (["route", "--n-boot", "0"], "must be at least 1"),
])
def test_bad_numbers_and_layer_ranges_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_layer_ranges_parse_ascending():
    assert build_parser().parse_args(["train", "--layers", "0-3, 8"]).layers == (0, 1, 2, 3, 8)


@pytest.mark.parametrize("lines, expected", [(['{"question": "What is 2 + 2?"}', '{"question": "  "}'], r"line 2 is empty"),
                                             (['{"question": 5}'], r"line 1 is not text \(int\)")])
def test_empty_questions_are_refused_with_their_number(lines, expected, tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=expected):
        main(["predict", "--probe", str(tmp_path), "--file", str(path)])
    with pytest.raises(SystemExit, match="--question number 1 is empty"):
        main(["predict", "--probe", str(tmp_path), "--question", "  "])


@pytest.mark.parametrize("content, message", [
    (b'{"question": "What is 2 + 2?"}\n{"question": "unterminated\n', r"questions\.jsonl, line 2: invalid JSON"),
    (b'{"question": "What is 2 + 2?"}\n[1, 2]\n', r"questions\.jsonl, line 2: expected a JSON object"),
    (b'{"question": "caf\xe9"}\n', r"questions\.jsonl is not UTF-8"),
])
def test_bad_question_files_name_the_file_and_line(content, message, tmp_path, capsys):
    path = tmp_path / "questions.jsonl"
    path.write_bytes(content)
    assert main(["predict", "--probe", str(tmp_path), "--file", str(path)]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_missing_files_and_misspelled_filters_say_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--probe", "p", "--file", "nowhere.txt"]) == 2
    assert "--file nowhere.txt: no such file" in capsys.readouterr().err
    assert main(["list", "--dataset", "math50"]) == 0
    assert "did you mean 'math500'" in capsys.readouterr().err


@pytest.mark.skipif(not (BUNDLED_REGISTRY / "manifest.json").exists(), reason="bundled registry not built")
def test_truncated_questions_get_a_notice(capsys):
    probe = BUNDLED_REGISTRY / "smollm2-135m-instruct--math500--level--tfidf"
    assert main(["predict", "--probe", str(probe), "--question", "What is 1 + 1? " * 400, "--question", "What is 2 + 2?"]) == 0
    assert "notice: 1 question(s) were longer than 1024 tokens" in capsys.readouterr().err


def test_engine_ray_without_the_extra_names_what_to_install(monkeypatch):
    """The scale extra is optional: without Ray, --engine ray fails with the install command (Ray hidden from import here)."""
    import sys

    from probes_hub.scale.ray_engine import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RuntimeError, match=r'pip install "probes-hub\[scale\]"'):
        require_ray()


def test_errors_map_to_exit_codes_and_a_bug_leaves_its_traceback(monkeypatch, capsys, tmp_path):
    """2: bad input (ValueError, a missing file); 1: the work failed (data drift, a refusal, OSError); 1 and a saved traceback: a bug."""
    import probes_hub.cli as cli
    from probes_hub.data.datasets import DataChangedError

    monkeypatch.setenv("PROBES_HUB_CACHE", str(tmp_path))
    for error, code in ((ValueError("bad --pool"), 2), (FileNotFoundError("no such file"), 2), (DataChangedError("math500 changed"), 1),
                        (OSError("Hub unreachable"), 1), (KeyError("tfidf"), 1)):
        def fail(args, error=error):
            raise error

        monkeypatch.setattr(cli, "cmd_list", fail)
        assert cli.main(["list"]) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ")
    assert "unexpected KeyError: 'tfidf'" in err and "--debug" in err
    [log] = (tmp_path / "logs").iterdir()
    assert "Traceback" in log.read_text() and "KeyError" in log.read_text()
    with pytest.raises(KeyError):
        cli.main(["--debug", "list"])
