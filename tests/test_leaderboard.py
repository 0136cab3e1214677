"""Leaderboard regeneration: rows match recorded metrics, broken probes fail alone, atomic writes survive a kill, scheduler, Hub push."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from probes_hub.hub.registry import Registry, write_index
from probes_hub.leaderboard import evaluate_registry, regenerate
from probes_hub.paths import PROJECT_ROOT
from space_app.scheduler import start_scheduler

PROJECT = PROJECT_ROOT


@pytest.fixture
def toy_registry(toy_probes, tmp_path) -> Path:
    _, _, out = toy_probes
    root = tmp_path / "registry"
    shutil.copytree(out, root)
    write_index(root)
    return root


@pytest.fixture
def tiny_model_loader(tiny, monkeypatch):
    """The toy probes were trained on an in-memory tiny model that no spec can load: hand it over (a test-only substitution)."""
    monkeypatch.setattr("probes_hub.extract.models.load_model", lambda spec: tiny)


def test_rows_match_recorded_metrics_and_are_deterministic(toy_registry, tiny_model_loader, tmp_path):
    table, metadata = evaluate_registry(Registry(toy_registry))
    assert len(table) == 6 and (table["status"] == "ok").all()
    for row in table.itertuples():
        assert row.value == pytest.approx(row.recorded_value, abs=1e-9) and row.low <= row.value <= row.high and row.n > 10
    linear = table[(table["probe_type"] == "linear") & (table["label"] == "solved")].iloc[0]
    assert linear["ece"] >= 0 and linear["delta_over_best_baseline"] == pytest.approx(linear["value"] - max(linear["baseline_length"], linear["baseline_tfidf"]))
    again, _ = evaluate_registry(Registry(toy_registry))
    assert again.drop(columns="evaluated_at").equals(table.drop(columns="evaluated_at"))
    assert list(metadata["data_hashes"].values())


def test_broken_probe_gets_a_failed_row_and_outputs_are_written(toy_registry, tiny_model_loader, tmp_path):
    (toy_registry / "tiny-llama--toy--difficulty--tfidf" / "model.safetensors").write_bytes(b"garbage")
    table, seconds = regenerate(str(toy_registry), tmp_path / "lb")
    failed = table[table["status"] != "ok"]
    assert failed["name"].tolist() == ["tiny-llama--toy--difficulty--tfidf"] and "safetensors" in failed["error"].iloc[0]
    assert (table["status"] == "ok").sum() == 5
    payload = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert payload["schema_version"] == 1 and len(payload["rows"]) == 6 and payload["refreshed_at"]
    assert (tmp_path / "lb" / "leaderboard.csv").exists() and (tmp_path / "lb" / "layer_curves.vl.json").exists()


def test_killed_regeneration_leaves_a_complete_leaderboard(toy_registry, tmp_path):
    """A real process regenerating in a loop is SIGKILLed at several moments; leaderboard.json must always parse and be whole."""
    out = tmp_path / "lb"
    out.mkdir()
    (out / "leaderboard.json").write_text(json.dumps({"schema_version": 1, "refreshed_at": "before", "rows": []}))
    env = {**os.environ, "PROBES_HUB_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    for delay in (0.3, 0.9, 1.7):
        process = subprocess.Popen([sys.executable, "-m", "probes_hub", "leaderboard", "--registry", str(toy_registry), "--out", str(out), "--every", "0",
                                    "--max-failed", "1"],  # the tiny test model exists only in the test process: rows fail here
                                   cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while json.loads((out / "leaderboard.json").read_text())["refreshed_at"] == "before" and time.time() < deadline:
            time.sleep(0.05)  # wait until it has written at least once, then kill it mid-loop
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        payload = json.loads((out / "leaderboard.json").read_text())
        assert payload["refreshed_at"] != "before" and len(payload["rows"]) == 6
        assert len(list(csv.DictReader((out / "leaderboard.csv").open()))) == 6


def test_scheduler_regenerates_repeatedly(toy_registry, tiny_model_loader, tmp_path):
    out = tmp_path / "scheduled"
    scheduler = start_scheduler(1.0, out, registry=str(toy_registry))
    try:
        stamps = []
        deadline = time.time() + 90
        while len(set(stamps)) < 2 and time.time() < deadline:
            time.sleep(0.3)
            path = out / "leaderboard.json"
            if path.exists():
                stamp = json.loads(path.read_text())["refreshed_at"]
                if not stamps or stamps[-1] != stamp:
                    stamps.append(stamp)
    finally:
        scheduler.shutdown(wait=True)
    assert len(stamps) >= 2 and stamps[1] > stamps[0]


def test_regeneration_refuses_without_data_or_with_too_many_failures_and_replaces_nothing(toy_registry, tiny_model_loader, tmp_path, capsys):
    """Missing data folder, a corrupt manifest, or more failed rows than allowed: exit 1 with the reason, the old leaderboard byte-identical."""
    from probes_hub.cli import main

    out = tmp_path / "lb"
    out.mkdir()
    (out / "leaderboard.json").write_text(json.dumps({"schema_version": 1, "refreshed_at": "before", "rows": []}))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["leaderboard", "--registry", str(toy_registry), "--out", str(out), "--data-dir", str(tmp_path / "no-data")]) == 1
    assert "Data directory not found" in capsys.readouterr().err
    (toy_registry / "tiny-llama--toy--difficulty--tfidf" / "model.safetensors").write_bytes(b"garbage")
    (toy_registry / "tiny-llama--toy--difficulty--length" / "model.safetensors").write_bytes(b"garbage")
    assert main(["leaderboard", "--registry", str(toy_registry), "--out", str(out), "--max-failed", "0.2"]) == 1
    assert "2 of 6 rows failed to re-evaluate (more than 20%)" in capsys.readouterr().err
    (toy_registry / "manifest.json").write_text("{ truncated")
    assert main(["leaderboard", "--registry", str(toy_registry), "--out", str(out)]) == 1
    assert "unreadable manifest" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, no temp folder left


def test_a_source_model_not_installed_keeps_its_recorded_values_in_the_table_and_the_matrix(toy_registry, tmp_path, monkeypatch):
    """``make leaderboard`` on a machine without an optional model (Gemma): its rows are skipped, not failed, and show the values
    recorded at training, so the model keeps its row in the README's matrix."""
    from probes_hub.extract.packaged import ModelNotInstalled
    from probes_hub.leaderboard import SKIPPED
    from probes_hub.matrix import model_task_cells

    def not_installed(spec):
        raise ModelNotInstalled(f"Model {spec!r} needs the package 'x': run make models")

    monkeypatch.setattr("probes_hub.extract.models.load_model", not_installed)
    table, _ = evaluate_registry(Registry(toy_registry))
    assert (table["status"] == SKIPPED).all()
    assert table["value"].tolist() == table["recorded_value"].tolist() and table["n"].notna().all()
    cells = model_task_cells(table)
    assert "test/tiny-llama" in set(cells["source"])


def test_a_refresh_extracts_only_scored_rows_and_carries_over_unchanged_probes(toy_registry, tiny_model_loader, tmp_path, monkeypatch):
    from probes_hub.data.datasets import row_roles
    from probes_hub.extract.feature_source import ModelFeatures

    extracted: list[list[str]] = []
    features = ModelFeatures.features

    def counting(self, questions, *args, **kwargs):
        extracted.append(list(questions))
        return features(self, questions, *args, **kwargs)

    monkeypatch.setattr(ModelFeatures, "features", counting)
    table, _ = regenerate(str(toy_registry), tmp_path / "lb")
    probe = Registry(toy_registry).load(label="difficulty", probe_type="linear")
    from probes_hub.data.datasets import training_dataset

    dataset = training_dataset(probe.record_.data, ["difficulty", "solved"])
    test = set(dataset.frame["question"].to_numpy()[row_roles(dataset, "difficulty")["test"]])
    assert extracted and all(set(batch) == test for batch in extracted) and len(test) < len(dataset.frame)
    assert not table["carried_over"].any() and (table["status"] == "ok").all()

    extracted.clear()
    again, _ = regenerate(str(toy_registry), tmp_path / "lb")
    assert extracted == [] and again["carried_over"].all()  # nothing changed: no model, no extraction
    pd.testing.assert_frame_equal(again[["name", "value", "low", "high", "n"]], table[["name", "value", "low", "high", "n"]], check_dtype=False)

    changed = toy_registry / "tiny-llama--toy--difficulty--linear" / "config.json"
    changed.write_text(changed.read_text().replace('"created_at"', '"created_at" ', 1))  # same content, new folder revision
    third, _ = regenerate(str(toy_registry), tmp_path / "lb")
    assert third.set_index("name")["carried_over"].to_dict() == {n: n != "tiny-llama--toy--difficulty--linear" for n in third["name"]}
    assert not regenerate(str(toy_registry), tmp_path / "lb", full=True)[0]["carried_over"].any()


def test_a_pair_of_models_shows_its_tasks_without_narrowing_the_matrix():
    """The committed leaderboard: the two-model row (SmolLM2 + Gemma read together) has probes for two tasks only; the columns stay
    every task both single models have, and the pair's other cells read "—"."""
    import pandas as pd

    from probes_hub.matrix import matrix_table, model_task_cells
    from probes_hub.paths import PROJECT_ROOT
    from probes_hub.schema.naming import PAIR_SEPARATOR

    table = pd.read_csv(PROJECT_ROOT / "leaderboard" / "leaderboard.csv")
    wide = matrix_table(model_task_cells(table)).set_index("source")
    pair = next(source for source in wide.index if PAIR_SEPARATOR in source)
    assert {"arc-challenge grade", "math level", "mmlu-pro success"} <= set(wide.columns)
    assert wide.loc[pair, "arc-challenge grade"] == "—" and wide.loc[pair, "math level"].lstrip("*")[:1] == "0"


def test_a_second_baseline_for_one_label_does_not_break_the_margins():
    """An uploaded baseline beside the original (``-v2``) gives one label two baseline rows: the first by name counts."""
    from probes_hub.leaderboard import COLUMN_NAMES, add_baseline_columns

    rows = [{"name": name, "model": "m", "dataset": "d", "label": "y", "probe_type": kind, "status": "ok", "value": value}
            for name, kind, value in (("a--length", "length", 0.2), ("a--length-v2", "length", 0.9), ("a--linear", "linear", 0.5))]
    table = pd.DataFrame(rows, columns=COLUMN_NAMES)
    add_baseline_columns(table)
    linear = table[table["name"] == "a--linear"].iloc[0]
    assert linear["baseline_length"] == 0.2 and linear["delta_over_best_baseline"] == pytest.approx(0.3)
