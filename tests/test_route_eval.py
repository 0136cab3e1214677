"""The ``route`` command end to end: probes trained on MMLU-Pro outcomes (tiny model), a three-model pool, CIs and the RESULT line."""

import json
import re

import pytest

from probes_hub.cli import main
from probes_hub.hub.registry import write_index
from probes_hub.train import TrainOptions, train

POOL = {"name": "test-3", "chars_per_token": 4, "models": [
    {"name": "Phi-3-mini-4k-instruct", "label": "correct:Phi-3-mini-4k-instruct", "active_params_b": 3.8},
    {"name": "Meta-Llama-3_1-8B-Instruct", "label": "correct:Meta-Llama-3_1-8B-Instruct", "active_params_b": 8.0},
    {"name": "Meta-Llama-3_1-70B-Instruct", "label": "correct:Meta-Llama-3_1-70B-Instruct", "active_params_b": 70.0}]}


@pytest.fixture(scope="module")
def routing_registry(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("route-registry")
    labels = (*(m["label"] for m in POOL["models"]), "log_output_chars")
    train(TrainOptions(dataset="mmlu-pro", labels=labels, probes=("shared", "linear", "tfidf"), out=str(out), limit=300,
                       max_length=200, cv_folds=3, progress=False), lm=tiny)
    write_index(out)
    return out


def test_route_prints_every_router_with_cis_and_the_result_line(routing_registry, tmp_path, capsys):
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(POOL))
    assert main(["route", "--pool", str(pool), "--registry", str(routing_registry), "--out", str(tmp_path / "out"), "--n-boot", "50"]) == 0
    printed = capsys.readouterr().out
    assert "probe router: shared probes" in printed
    for router, costs in (("shared", "linear output-length probe"), ("linear", "linear output-length probe"), ("tfidf", "tfidf output-length probe")):
        assert re.search(rf"{router} utility router .* costs: {costs}", printed)
    result = dict(pair.split("=") for pair in printed.strip().splitlines()[-1].removeprefix("RESULT ").split())
    assert set(result) == {"best_single_acc", "cost_ratio_at_95", "cost_ratio_at_100", "aiq", "tfidf_cost_ratio_at_95", "tfidf_aiq"}
    routing = json.loads((tmp_path / "out" / "routing.json").read_text())
    assert routing["probe"] == "shared" and routing["probe_types"] == ["shared", "linear", "tfidf"]
    assert routing["cost_sources"]["tfidf"] == "tfidf output-length probe"
    singles = [s["accuracy"] for s in routing["singles"]]
    assert routing["oracle"]["accuracy"] >= max(singles) and float(result["best_single_acc"]) == pytest.approx(max(singles), abs=1e-4)
    for name in routing["probe_types"]:
        value, low, high = routing["routers"][name]["aiq"]
        assert low <= value <= high and 0 <= value <= 1
    assert re.search(r"n_test=\d+ questions", printed)


def test_route_rejects_a_registry_without_success_probes_for_the_pool(tmp_path, routing_registry):
    pool = dict(POOL, models=[*POOL["models"], {"name": "Yi-6B", "label": "correct:Yi-6B", "active_params_b": 6.0}])
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(pool))
    assert main(["route", "--pool", str(path), "--registry", str(routing_registry), "--out", str(tmp_path / "out")]) != 0


def test_routers_fall_back_to_mean_costs_without_a_length_probe(routing_registry, tmp_path, capsys):
    import shutil

    registry = tmp_path / "registry"
    shutil.copytree(routing_registry, registry, ignore=shutil.ignore_patterns("*log_output_chars*"))
    write_index(registry)
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(POOL))
    assert main(["route", "--pool", str(pool), "--registry", str(registry), "--out", str(tmp_path / "out"), "--n-boot", "20"]) == 0
    assert capsys.readouterr().out.count("costs: mean training cost") == 3
