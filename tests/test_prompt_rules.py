"""Every path reads a probe with the prompt rule it recorded (chat or raw, max length): the CLI, the app's Predictor, routing."""

import json

import pytest

from probes_hub.cli import main
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.models import load_model
from probes_hub.hub.registry import Registry
from space_app.predictor import Predictor

from .conftest import WORDS, train_on_folder_model

LONG_QUESTION = " ".join(WORDS * 4)  # about 150 tokens: longer than the probe's 64


@pytest.fixture(scope="module")
def short_prompt_probe(tmp_path_factory):
    """(model folder, registry) with one linear probe trained by the CLI with --max-length 64 on a tiny model saved as a folder."""
    return train_on_folder_model(tmp_path_factory.mktemp("max-length"), seed=0, longest=40, rows=90, words_per_level=8,
                                 cli_args=["--probe", "linear", "--max-length", "64"])


def test_app_and_cli_read_a_long_question_with_the_probes_max_length(short_prompt_probe, capsys):
    model, registry = short_prompt_probe
    [folder] = [p for p in registry.iterdir() if p.is_dir()]
    assert json.loads((folder / "config.json").read_text())["model"]["prompt"]["max_length"] == 64
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--probe", str(folder), "--question", LONG_QUESTION, "--json"]) == 0
    captured = capsys.readouterr()
    cli_value = json.loads(captured.out)[0][folder.name]
    assert "longer than 64 tokens" in captured.err
    prediction = Predictor(ModelFeatures(load_model(str(model))), Registry(str(registry))).predict(LONG_QUESTION)
    [reading] = prediction.difficulty
    assert reading.value == pytest.approx(cli_value, rel=1e-9, abs=1e-9)
    assert prediction.truncated and "longer than 64 tokens" in prediction.notices[0]
    full = ModelFeatures(load_model(str(model))).features([LONG_QUESTION], [0, 1, 2, 3], max_length=1024)[0]
    assert full.token_counts[0] > 64  # the question really is cut at 64: read at 1024 tokens it would be longer


def test_text_only_probes_follow_the_model_bound_probes_rule(short_prompt_probe, toy_probes):
    """A TF-IDF probe recorded with another model's chat prompt reads the question's text only: it joins the rule of the probes that
    read the model (a base model without a chat template must not be asked for one)."""
    from probes_hub.apply import probe_inputs, prompt_rule
    from probes_hub.probes import Probe

    model, registry = short_prompt_probe
    [folder] = [p for p in registry.iterdir() if p.is_dir()]
    linear = Probe.from_pretrained(folder)
    _, _, out = toy_probes
    tfidf = Probe.from_pretrained(next(p for p in out.iterdir() if p.name.endswith("difficulty--tfidf")))
    assert prompt_rule(tfidf)[0] is None and prompt_rule(linear) == (True, 64)
    inputs = probe_inputs(ModelFeatures(load_model(str(model))), {"linear": linear, "tfidf": tfidf}, [LONG_QUESTION])
    assert list(inputs.by_rule) == [(True, 64)] and inputs.of("tfidf") is inputs.of("linear")
