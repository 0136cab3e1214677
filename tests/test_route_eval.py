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
    operating = {f"{prefix}op_{kind}_ratio" for prefix in ("", "tfidf_", "knn_") for kind in ("acc", "cost")}
    assert set(result) == {"best_single_acc", "cost_ratio_at_95", "cost_ratio_at_100", "aiq", "tfidf_cost_ratio_at_95", "tfidf_aiq", "embedding_aiq",
                           "knn_aiq", *operating}
    assert "upper reference (chosen on test)" in printed and "at the operating point chosen on calibration questions (headline)" in printed
    routing = json.loads((tmp_path / "out" / "routing.json").read_text())
    assert routing["probe"] == "shared" and routing["probe_types"] == ["shared", "linear", "tfidf"]
    assert set(routing["held_out_lambdas"]) == {f"{r}{suffix}" for r in ("shared", "linear", "tfidf", "knn") for suffix in ("", "-cascade")}
    for key, router in routing["routers"].items():  # the operating point is the test curve's point at the setting chosen on calibration
        point = router["operating_point"]
        assert point["setting"] == routing["held_out_lambdas"][key]
        on_curve = next(p for p in router["points"] if p["setting"] == point["setting"])
        assert point["accuracy"][0] == pytest.approx(on_curve["accuracy"]) and point["accuracy"][1] <= point["accuracy"][0] <= point["accuracy"][2]
        assert point["cost_ratio"][0] == pytest.approx(on_curve["cost"] / routing["best_single"]["cost"])
        assert point["savings"][0] == pytest.approx(1 - point["cost_ratio"][0])
    assert float(result["op_acc_ratio"]) == pytest.approx(routing["routers"]["shared"]["operating_point"]["accuracy_ratio"][0], abs=1e-4)
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
    assert capsys.readouterr().out.count("router: mean training cost") == 4  # shared, linear, tfidf and knn


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


def _workload_pool(tmp_path):
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(POOL))
    from probes_hub.routing.evaluate import load_pool

    return pool, load_pool(str(pool))


def test_a_workload_is_routed_in_batches_exactly_as_question_by_question(routing_registry, tiny, tmp_path):
    """``plan_workload`` (route-file and the app's tab) gives each question the suggestion ``suggest`` gives it alone; the summary's
    figures follow from the rows, and recorded outcomes give the realised accuracy of the plan and of always using one model."""
    import pandas as pd

    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.hub.registry import Registry
    from probes_hub.routing import workload as routing_workload
    from probes_hub.routing.suggest import router_for

    path, pool = _workload_pool(tmp_path)
    questions = [f"What is {a} + {a * 3}?" for a in range(7)] + ["Prove that there are infinitely many primes.", "Name the capital of France."]
    outcomes = {f"correct:{m}": [(i + j) % 2 for i in range(len(questions))] for j, m in enumerate(pool.names)}
    file = tmp_path / "workload.csv"
    pd.DataFrame({"id": [f"q{i}" for i in range(len(questions))], "question": questions, **outcomes}).to_csv(file, index=False)
    source = ModelFeatures(tiny)
    router = router_for(str(path), Registry(routing_registry), source)
    workload = routing_workload.read_workload(file, pool)
    original, routing_workload.WORKLOAD_BATCH = routing_workload.WORKLOAD_BATCH, 4  # several batches, the last one short
    try:
        plan = routing_workload.plan_workload(router, source, workload, lam=0.3, progress=False)
    finally:
        routing_workload.WORKLOAD_BATCH = original
    for row, question in zip(plan.rows.itertuples(), questions):
        alone = router.suggest(source.features([question], router.layers_needed())[0], lam=0.3)
        assert row.model == alone.model and row.p_correct == pytest.approx(alone.p_correct[alone.model], abs=1e-9)
        assert row.expected_cost == pytest.approx(alone.expected_cost[alone.model], rel=1e-9)
    summary = plan.summary
    assert summary.n == len(questions) and plan.rows["id"].tolist() == [f"q{i}" for i in range(len(questions))]
    assert summary.expected_accuracy == pytest.approx(plan.rows["p_correct"].mean()) and sum(summary.shares.values()) == pytest.approx(1)
    correct = pd.DataFrame(outcomes).to_numpy()
    chosen = [pool.names.index(m) for m in plan.rows["model"]]
    assert summary.realised["plan"][0] == pytest.approx(correct[range(len(questions)), chosen].mean())
    assert summary.realised[f"always {summary.best_model}"][0] == pytest.approx(correct[:, pool.names.index(summary.best_model)].mean())
    assert summary.realised["plan"][1] is None  # no output_chars columns: no realised cost


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ("text\nWhat is 2+2?\n", ".csv", "no 'question' column"),
    ("question\nWhat is 2+2?\n\" \"\n", ".csv", "line 3: the question is empty"),
    ('{"question": "What is 2+2?"}\n{"question": 7}\n', ".jsonl", "line 2: the question is not text"),
    ("question,correct:Phi-3-mini-4k-instruct\nWhat is 2+2?,1\n", ".csv", "has 1 of pool 'test-3''s correct:<model> columns"),
    ("id,question\n1,What?\n1,Why?\n", ".csv", "repeats ids"),
    ("question\n", ".csv", "holds 0 questions"),
    ("question\nWhat?\n", ".txt", "Unsupported file type"),
])
def test_bad_workload_files_are_refused_with_the_file_and_row(tmp_path, content, suffix, message):
    from probes_hub.routing.workload import read_workload

    _, pool = _workload_pool(tmp_path)
    file = tmp_path / f"workload{suffix}"
    file.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_workload(file, pool)


def test_bad_outcome_values_and_too_many_questions_are_refused(tmp_path):
    import pandas as pd

    from probes_hub.routing.workload import read_workload

    _, pool = _workload_pool(tmp_path)
    file = tmp_path / "workload.csv"
    pd.DataFrame({"question": ["a?", "b?"], **{f"correct:{m}": [1, 2] for m in pool.names}}).to_csv(file, index=False)
    with pytest.raises(ValueError, match=r"workload.csv, line 3: correct:Phi-3-mini-4k-instruct is '2'; it must be 0 or 1"):
        read_workload(file, pool)
    pd.DataFrame({"question": [f"q{i}?" for i in range(11)]}).to_csv(file, index=False)
    with pytest.raises(ValueError, match="holds 11 questions; route between 1 and 10"):
        read_workload(file, pool, limit=10)


def test_every_routers_operating_point_is_chosen_without_test_outcomes(routing_registry, tmp_path):
    """Flip every recorded outcome of the test questions: the test scores change, but no router's calibrated setting does."""
    import pandas as pd

    from probes_hub.data.datasets import resolve_data_dir
    from probes_hub.hub.registry import Registry
    from probes_hub.hub.reports import read_predictions
    from probes_hub.routing.evaluate import evaluate_routing

    path, pool = _workload_pool(tmp_path)
    registry = Registry(routing_registry)
    source = resolve_data_dir()
    flipped = tmp_path / "data"
    flipped.mkdir()
    for entry in source.iterdir():  # the same data folder, except MMLU-Pro's outcomes
        if entry.name != "mmlu_pro":
            (flipped / entry.name).symlink_to(entry)
    (flipped / "mmlu_pro").mkdir()
    (flipped / "mmlu_pro" / "questions.jsonl").symlink_to(source / "mmlu_pro" / "questions.jsonl")
    saved = read_predictions(registry.folder(registry.list(label=POOL["models"][0]["label"], probe_type="shared")[0].name))
    test_ids = set(saved.index[saved["role"] == "test"])
    outcomes = pd.read_csv(source / "mmlu_pro" / "outcomes.csv")
    is_test = outcomes["question_id"].astype(str).isin(test_ids)
    assert is_test.any()
    outcomes.loc[is_test, "correct"] = 1 - outcomes.loc[is_test, "correct"]
    outcomes.to_csv(flipped / "mmlu_pro" / "outcomes.csv", index=False)
    original = evaluate_routing(pool, registry, n_boot=5)
    changed = evaluate_routing(pool, registry, data_dir=str(flipped), n_boot=5)
    assert changed["held_out_lambdas"] == original["held_out_lambdas"] and changed["knn_k"] == original["knn_k"]
    assert changed["best_single"]["accuracy"] == pytest.approx(1 - min(s.accuracy for s in original["singles"]))
    assert changed["routers"]["shared"].operating_point.accuracy[0] != original["routers"]["shared"].operating_point.accuracy[0]


def test_pools_lists_every_bundled_pool_with_its_costs_and_how_to_add_one(capsys, tmp_path):
    from probes_hub.paths import bundled_pools

    assert main(["pools"]) == 0
    listed = capsys.readouterr().out
    for name in bundled_pools():
        assert re.search(rf"^{re.escape(name)}: \d+ models on .+; prices: \w", listed, re.M), name
    assert "A pool of your own is a JSON file" in listed
    assert main(["pools", "math"]) == 0
    shown = capsys.readouterr().out
    assert "o1-mini-2024-09-12: 12 USD per million output tokens, output counted x5" in shown
    assert len(re.findall(r"^  .+: [\d.]+ USD per million output tokens", shown, re.M)) == 27
    path, _ = _workload_pool(tmp_path)
    assert main(["pools", str(path)]) == 0 and "Phi-3-mini-4k-instruct: 3.8 B active parameters" in capsys.readouterr().out
