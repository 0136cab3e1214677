"""The app's views without a server: the Predict and Leaderboard tabs' outputs from a real predictor (the tiny model and the toy
probes) and a real leaderboard; the layout in ui.py only places them and maps refusals to gr.Error."""

import shutil

import pytest

from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.hub.registry import Registry, write_index
from space_app.leaderboard_view import LeaderboardReader, leaderboard_view
from space_app.predict_view import predict_view
from space_app.predictor import Predictor


@pytest.fixture
def toy_registry(toy_probes, tmp_path):
    _, _, out = toy_probes
    shutil.copytree(out, tmp_path / "registry")
    write_index(tmp_path / "registry")
    return tmp_path / "registry"


def test_predict_view_reads_every_probe_and_refuses_bad_controls(tiny, toy_registry):
    predictor = Predictor(ModelFeatures(tiny), Registry(str(toy_registry)))
    view = predict_view(predictor, "how many apples cost one two three", "", "utility", 0.3, 0.7)
    assert "stopped after layer" in view.status and view.routing.startswith("No routing")
    assert [r["probe"] for r in view.payload["difficulty"]] == ["toy difficulty"] and set(view.payload["success"]) == {"toy solved"}
    assert "toy difficulty" in view.difficulty and view.layers_chart is not None and view.success_chart is not None
    assert view.headline.startswith("### ") and "toy difficulty" in view.headline and view.payload["headline"]["probe"] == "toy difficulty"
    for controls, message in ((("cheapest!", 0.3, 0.7), "Routing rule must be"), (("utility", float("nan"), 0.7), "lambda must be a number"),
                              (("utility", 0.3, 2.0), "target must be a number from 0 to 1"), (("utility", True, 0.7), "lambda must be")):
        with pytest.raises(ValueError, match=message):
            predict_view(predictor, "how many apples", "", *controls)
    with pytest.raises(ValueError, match="type a question"):
        predict_view(predictor, "   ", "", "utility", 0.3, 0.7)


def test_the_headline_is_the_difficulty_reading_with_the_best_training_cv_never_a_cost_label():
    from space_app.predict_view import headline_markdown, headline_reading
    from space_app.predictor import Prediction, Reading

    def reading(dataset: str, label: str, cv: float, test: float, percentile: float) -> Reading:
        return Reading(f"{dataset} {label}", dataset, label, "linear", 3.2, (1.0, 5.0), {"name": "spearman", "value": test, "low": 0.5, "high": 0.6,
                       "n": 500}, percentile=percentile, cv_spearman=cv)

    readings = [reading("math500", "level", 0.55, 0.70, 0.5), reading("math", "level", 0.61, 0.58, 0.9), reading("mixed", "log_output_chars", 0.9, 0.9, 0.2)]
    chosen = headline_reading(Prediction(readings, [], {}, 0.0, 0.0, 10, False, []))
    assert chosen.name == "math level"  # the best CV, not the best test score; the answer-length label is a cost, not a difficulty
    assert headline_markdown(chosen).startswith("### Hard: MATH level 3.2 of 5") and "CV Spearman 0.61" in headline_markdown(chosen)
    assert headline_reading(Prediction([readings[2]], [], {}, 0.0, 0.0, 10, False, [])) is None
    share = Reading("mixed success_rate", "mixed", "success_rate", "linear", 0.9, (0.0, 1.0), {}, percentile=0.9, cv_spearman=0.66)
    assert headline_markdown(share).startswith("### Easy: 90% of the benchmark's models")  # most models solve it: easy, not hard
    stacked = Reading("math level", "math", "level", "stacked", 4.6, (1.0, 5.0), {}, percentile=0.83, cv_spearman=0.7, activations_add=(0.68, 0.61))
    assert "What the activations add: CV Spearman 0.68 with them, 0.61 from the text readings alone (+0.07)" in headline_markdown(stacked)


def test_leaderboard_view_filters_the_table_and_keeps_the_overview_whole(toy_registry, tmp_path, tiny, monkeypatch):
    from probes_hub.leaderboard import regenerate

    monkeypatch.setattr("probes_hub.extract.models.load_model", lambda spec: tiny)  # the toy probes' in-memory model (test-only)
    regenerate(str(toy_registry), tmp_path / "lb")
    registry = Registry(str(toy_registry))
    view = leaderboard_view(LeaderboardReader(), str(tmp_path / "lb"), registry, {}, label="solved")
    assert len(view.table) == 3 and set(view.table["label"]) == {"solved"}
    assert view.choices[2] == ["all", "difficulty", "solved"] and "refreshed" in view.refreshed.lower() and view.version
    assert view.chart is not None
    nothing = leaderboard_view(LeaderboardReader(), str(tmp_path / "none"), registry, {})
    assert len(nothing.table) == 6  # no leaderboard yet: the values recorded at training


def test_workload_views_show_the_plan_against_fixed_choices_and_escape_names():
    """The Route a workload tab's pure views: the summary's table and realised line, only models that get questions, and a chart
    that labels the plan, the most accurate and the cheapest model."""
    from probes_hub.routing.workload import PlanSummary
    from space_app.workload_view import plan_chart, shares_frame, summary_markdown

    summary = PlanSummary(10, 0.3, None, 0.8, 20.0, {"big*model": (0.9, 100.0), "mid": (0.7, 30.0), "small": (0.2, 5.0)}, "big*model", "small", 1,
                          {"big*model": 0.3, "mid": 0.7, "small": 0.0}, {"plan": (0.75, None), "always big*model": (0.85, None)})
    text = summary_markdown(summary, "math", "USD")
    assert "Expected accuracy **80.0%** at **20.0%** of the cost of always using big\\*model (90.0%)" in text
    assert "| always small | 0.200 | 5 | 5.0% |" in text and "1** of 10" in text and "plan accuracy 0.750" in text
    assert shares_frame(summary).to_dict(orient="list") == {"model": ["mid", "big*model"], "share of questions": ["70.0%", "30.0%"]}
    labels = [row["label"] for rows in plan_chart(summary).to_dict()["datasets"].values() for row in rows]
    assert sorted(filter(None, labels)) == ["always big*model", "always small", "the plan"]
