"""End to end on the real embedded SmolLM2 through the CLI: train on MATH-500 level, then predict reproduces."""

import json

import numpy as np

from probes_hub.cli import main
from probes_hub.hub.reports import read_predictions


def test_train_then_predict_reproduces_saved_test_predictions(smollm2, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("probes_hub.extract.models.load_model", lambda spec: smollm2)  # what train and predict load (the session's copy)
    out = tmp_path / "runs"
    code = main(["train", "--model", "smollm2", "--dataset", "math500", "--label", "level", "--limit", "100",
                 "--layers", "6,12", "--probe", "linear", "length", "--cv-folds", "3", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "selected: layer" in printed and "95% CI" in printed and "baseline tfidf" in printed
    folder = out / "smollm2-135m-instruct--math500--level--linear"
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["hidden_size"] == 576 and config["selection"]["layer"] in (6, 12)
    table = read_predictions(folder)
    saved = table.loc[table["role"] == "test", "prediction"].to_dict()
    assert len(saved) == config["data"]["n_test"] == config["metrics"]["test"]["n"] > 20

    for extra in ([], ["--no-cache"]):
        code = main(["predict", "--probe", str(folder), "--dataset", "math500", "--limit", "100", "--split", "test", "--json", *extra])
        predicted = {row["id"]: row[folder.name] for row in json.loads(capsys.readouterr().out)}
        assert code == 0 and predicted.keys() == saved.keys()
        np.testing.assert_allclose([predicted[k] for k in saved], list(saved.values()), rtol=0, atol=1e-6)

    code = main(["predict", "--probe", str(folder), "--question", "What is 1+1?", "--question", "Prove the Riemann hypothesis."])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].split("\t") == ["id", folder.name]
