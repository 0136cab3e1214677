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
        assert re.search(rf"{router} utility router +[\d.]+ \[", printed) and f"{router} router: {costs}" in printed
    result = dict(pair.split("=") for pair in printed.strip().splitlines()[-1].removeprefix("RESULT ").split())
    assert set(result) == {"best_single_acc", "cost_ratio_at_95", "cost_ratio_at_100", "aiq", "tfidf_cost_ratio_at_95", "tfidf_aiq", "embedding_aiq"}
    routing = json.loads((tmp_path / "out" / "routing.json").read_text())
    assert routing["probe"] == "shared" and routing["probe_types"] == ["shared", "linear", "tfidf"]
    assert routing["cost_sources"]["tfidf"] == "tfidf output-length probe"
    singles = [s["accuracy"] for s in routing["singles"]]
    assert routing["oracle"]["accuracy"] >= max(singles) and float(result["best_single_acc"]) == pytest.approx(max(singles), abs=1e-4)
    for name in routing["probe_types"]:
        value, low, high = routing["routers"][name]["aiq"]
        assert low <= value <= high and 0 <= value <= 1
    assert re.search(r"== all test questions \(n=\d+\)", printed)


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
    assert capsys.readouterr().out.count("router: mean training cost") == 3


def test_suggest_follows_lambda_and_states_the_cost_ratio(routing_registry, tiny, tmp_path):
    """One question through the library call the app and ``probes-hub suggest`` share: lambda 0 takes the likeliest model,
    a huge lambda the cheapest, and the cost ratio is against the pool's most accurate model."""
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.hub.registry import Registry
    from probes_hub.routing.suggest import router_for

    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(POOL))
    source = ModelFeatures(tiny)
    router = router_for(str(pool), Registry(routing_registry), source)
    features, _ = source.features(["What is 7 + 5?"], router.layers_needed())
    free, thrifty = router.suggest(features, lam=0.0), router.suggest(features, lam=1e6)
    assert set(free.p_correct) == {m["name"] for m in POOL["models"]} and 0 <= free.in_distribution <= 1
    assert free.model == max(free.p_correct, key=free.p_correct.get)
    assert thrifty.model == min(thrifty.expected_cost, key=thrifty.expected_cost.get)
    assert thrifty.cost_ratio == pytest.approx(thrifty.expected_cost[thrifty.model] / thrifty.expected_cost[thrifty.most_accurate])
    assert router.suggest(features, target=0.0).model == thrifty.model
    with pytest.raises(ValueError, match="lambda"):
        router.suggest(features, lam=-1)


def test_bundled_pools_load_with_their_cost_rules():
    from probes_hub.routing.evaluate import load_pool

    math = load_pool("math")
    assert math.dataset == "mixed" and math.benchmarks == ("gsm8k", "math-l5") and len(math.models) == 27 and math.cost_unit.startswith("micro-USD")
    o1 = next(m for m in math.models if m.name.startswith("o1-"))
    assert o1.output_multiplier == 5.0 and o1.cost_per_token == 12.0
    assert {m.name for m in load_pool("math-no-o1").models} == {m.name for m in math.models} - {o1.name}
    assert load_pool(None).name == "mmlu-pro-25" and load_pool("mmlu-pro-25").dataset == "mmlu-pro"
    with pytest.raises(ValueError, match="not a valid pool file"):
        load_pool("no-such-pool")


def test_out_of_distribution_questions_fall_back_to_the_broadest_probes(routing_registry, tiny):
    """When the pool's own probes find a question atypical, the suggestion reads the fallback probes instead."""
    import copy

    import numpy as np

    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.hub.registry import Registry
    from probes_hub.routing.evaluate import Pool, PoolModel
    from probes_hub.routing.suggest import PoolFacts, PoolRouter

    registry = Registry(routing_registry)
    pool = Pool("test-3", tuple(PoolModel(m["name"], m["label"], m["active_params_b"]) for m in POOL["models"]), 4.0)
    own = {m.name: registry.load(dataset="mmlu-pro", label=m.label, probe_type="shared") for m in pool.models}
    broad = {m.name: registry.load(dataset="mmlu-pro", label=m.label, probe_type="linear") for m in pool.models}  # stands in for mixed
    facts = PoolFacts({m.name: m.cost_per_token for m in pool.models}, {m.name: 0.5 for m in pool.models})
    source = ModelFeatures(tiny)
    features, _ = source.features(["What is 7 + 5?"], sorted({p.layer for p in [*own.values(), *broad.values()]}))
    typical, unfamiliar = ({m: copy.deepcopy(p) for m, p in own.items()} for _ in range(2))
    for probe in typical.values():
        probe.ood_quantiles_ = probe.ood_quantiles_ * 1e9  # training questions spread without bound: every question is typical
    for probe in unfamiliar.values():
        probe.ood_quantiles_ = np.zeros_like(probe.ood_quantiles_)  # every training question sat at the mean: anything else is atypical
    familiar = PoolRouter(pool, facts, typical, fallback=broad).suggest(features, lam=0.0)
    assert familiar.p_correct == {m: float(own[m].predict(features)[0]) for m in own} and familiar.in_distribution > 0.9
    fallen_back = PoolRouter(pool, facts, unfamiliar, fallback=broad).suggest(features, lam=0.0)
    assert fallen_back.p_correct == {m: float(broad[m].predict(features)[0]) for m in broad}
    assert PoolRouter(pool, facts, unfamiliar).suggest(features, lam=0.0).in_distribution == 0.0  # no fallback: keeps its own, flagged


def test_route_chooses_the_source_model_when_the_registry_has_two(routing_registry, tmp_path, capsys):
    """A registry with two source models' probes for the same labels (the bundled one has SmolLM2's and Gemma's): --model picks."""
    import shutil

    registry = tmp_path / "registry"
    shutil.copytree(routing_registry, registry)
    for folder in [p for p in registry.iterdir() if p.is_dir()]:
        twin = registry / f"other-{folder.name}"
        shutil.copytree(folder, twin)
        config = json.loads((twin / "config.json").read_text())
        config["model"]["display_id"] = "test/other-llama"
        (twin / "config.json").write_text(json.dumps(config))
    write_index(registry)
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(POOL))
    args = ["route", "--pool", str(pool), "--registry", str(registry), "--n-boot", "20"]
    assert main([*args, "--out", str(tmp_path / "default")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main([*args, "--model", "test/other-llama", "--out", str(tmp_path / "other")]) == 0
    assert "probes of test/other-llama" in capsys.readouterr().out
    assert json.loads((tmp_path / "other" / "routing.json").read_text())["source_model"] == "test/other-llama"
