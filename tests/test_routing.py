"""Routers and routing metrics on small hand-computed cases, including ties, one model and all-wrong pools."""

import numpy as np
import pytest

from probes_hub.routing.evaluate import RouterDecisions
from probes_hub.routing.policies import (
    CurvePoint,
    aiq,
    apgr,
    convex_hull_curve,
    cost_to_reach,
    cpt,
    oracle_choice,
    pareto_frontier,
    pgr_curve,
    recommend,
    route_cascade,
    route_threshold,
    route_utility,
)


def test_utility_router_trades_success_for_cost_and_breaks_ties_to_the_cheaper_model():
    p, cost = np.array([[0.5, 0.9], [0.7, 0.7]]), np.array([1.0, 10.0])
    assert route_utility(p, cost, 0.0).tolist() == [1, 0]  # tie on the second question: cheaper model
    assert route_utility(p, cost, 1.0).tolist() == [0, 0]  # 0.5 - 0.1 > 0.9 - 1.0
    reversed_cost = np.array([10.0, 1.0])
    assert route_utility(np.array([[0.7, 0.7]]), reversed_cost, 0.0).tolist() == [1]


def test_single_model_pool_always_routes_to_it():
    p = np.array([[0.2], [0.9]])
    assert route_utility(p, np.array([3.0]), 5.0).tolist() == [0, 0]
    choice, called = route_cascade(p, np.array([3.0]), 0.5)
    assert choice.tolist() == [0, 0] and called.all()


def test_cascade_escalates_and_pays_for_every_model_called():
    p = np.array([[0.5, 0.7, 0.9], [0.8, 0.1, 0.1], [0.1, 0.1, 0.1]])
    expected_cost = np.array([1.0, 2.0, 3.0])
    choice, called = route_cascade(p, expected_cost, 0.6)
    assert choice.tolist() == [1, 0, 2]
    assert called.tolist() == [[True, True, False], [True, False, False], [True, True, True]]
    correct = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0]])
    cost = np.tile(expected_cost, (3, 1))
    decisions = RouterDecisions(np.array([0.6]), choice[None], called[None])  # how routing evaluation scores a cascade
    assert decisions.accuracy(correct)[0] == pytest.approx(2 / 3) and decisions.paid(cost)[0].mean() == pytest.approx((3 + 1 + 6) / 3)


def test_threshold_router_and_oracle():
    assert route_threshold(np.array([0.2, 0.8, 0.5]), 0.5).tolist() == [1, 0, 0]
    correct = np.array([[0, 1, 1], [1, 1, 0], [0, 0, 0]])  # last question: all wrong -> cheapest model
    cost = np.array([[1.0, 2.0, 0.5], [1.0, 2.0, 3.0], [4.0, 2.0, 3.0]])
    assert oracle_choice(correct, cost).tolist() == [2, 0, 1]


def test_pareto_frontier_and_convex_hull():
    points = [CurvePoint(0, 0.5, 1), CurvePoint(1, 0.4, 2), CurvePoint(2, 0.7, 3), CurvePoint(3, 0.6, 3)]
    assert [(q.cost, q.accuracy) for q in pareto_frontier(points)] == [(1, 0.5), (3, 0.7)]
    hull = convex_hull_curve([CurvePoint(0, 0.0, 0), CurvePoint(1, 0.5, 1), CurvePoint(2, 0.6, 2), CurvePoint(3, 1.0, 3)])
    assert [(q.cost, q.accuracy) for q in hull] == [(0, 0.0), (1, 0.5), (3, 1.0)]
    tied = convex_hull_curve([CurvePoint(0, 0.5, 1), CurvePoint(1, 0.5, 2)])  # equal accuracy: the cheaper point only
    assert [(q.cost, q.accuracy) for q in tied] == [(1, 0.5)]


def test_aiq_hand_computed():
    hull_points = [CurvePoint(0, 0.0, 0), CurvePoint(1, 0.5, 1), CurvePoint(2, 0.6, 2), CurvePoint(3, 1.0, 3)]
    assert aiq(hull_points, (0, 3)) == pytest.approx(1.75 / 3, abs=1e-3)  # trapezoids 0.25 + 1.5 over width 3
    assert aiq([CurvePoint(0, 0.6, 2)], (1, 3)) == pytest.approx(0.3, abs=1e-3)  # nothing below its cost, flat above
    assert aiq([CurvePoint(0, 0.0, 1), CurvePoint(1, 0.0, 3)], (1, 3)) == 0.0  # all wrong
    with pytest.raises(ValueError, match="increasing"):
        aiq(hull_points, (3, 3))


def test_pgr_apgr_cpt_hand_computed():
    p_weak = np.array([0.1, 0.2, 0.8, 0.9])
    weak, strong = np.array([0, 0, 1, 1]), np.array([1, 1, 1, 1])
    share, pgr = pgr_curve(p_weak, weak, strong)
    assert share.tolist() == [0, 0.25, 0.5, 0.75, 1] and pgr.tolist() == [0, 0.5, 1, 1, 1]
    assert apgr(p_weak, weak, strong) == pytest.approx(0.75)
    assert cpt(p_weak, weak, strong, 0.5) == 0.25 and cpt(p_weak, weak, strong, 0.8) == 0.5
    assert cpt(p_weak[::-1], weak, strong, 0.8) == 1.0  # a router that ranks backwards needs every call
    with pytest.raises(ValueError, match="same accuracy"):
        pgr_curve(p_weak, weak, weak)


def test_cost_to_reach():
    points = [CurvePoint(0, 0.5, 10), CurvePoint(1, 0.6, 20), CurvePoint(2, 0.6, 15)]
    assert cost_to_reach(points, 0.6) == 15 and cost_to_reach(points, 0.7) == float("inf")


def test_recommend_for_one_question():
    p = {"small": 0.55, "medium": 0.7, "large": 0.9}
    cost = {"small": 1.0, "medium": 5.0, "large": 50.0}
    assert recommend(p, cost, lam=0.0).model == "large"
    rec = recommend(p, cost, lam=1.0)
    assert rec.model == "medium" and rec.strongest == "large" and rec.strongest_cost == 50.0 and rec.p_success == 0.7
    assert recommend(p, cost, target=0.6).model == "medium"
    assert recommend(p, cost, target=0.95).model == "large"  # nobody reaches it: most likely to succeed
    with pytest.raises(ValueError, match="exactly one"):
        recommend(p, cost)


def test_utility_router_reads_per_question_costs():
    p = np.array([[0.6, 0.8], [0.6, 0.8]])
    per_question = np.array([[1.0, 10.0], [1.0, 1.2]])  # the strong model is cheap on the second question only
    assert route_utility(p, per_question, 1.0).tolist() == [0, 1]
    np.testing.assert_array_equal(route_utility(p, np.array([1.0, 10.0]), 1.0), route_utility(p, np.tile([1.0, 10.0], (2, 1)), 1.0))


def test_recommend_cost_scale_makes_lambda_comparable_across_questions():
    p = {"small": 0.5, "large": 0.8}
    mean_cost = {"small": 1.0, "large": 10.0}
    long_answer = {m: 3.0 * c for m, c in mean_cost.items()}  # every model writes 3x more than usual
    assert recommend(p, long_answer, lam=0.2).model == recommend(p, mean_cost, lam=0.2).model == "large"  # scale-free by default
    assert recommend(p, long_answer, lam=0.2, cost_scale=10.0).model == "small"  # 0.8 - 0.2 * 3 < 0.5 - 0.2 * 0.3


def test_every_router_takes_the_cheapest_setting_reaching_the_level_on_calibration_questions():
    """One rule for lambdas and thresholds alike; it reads only the calibration outcomes it is given, and falls back to the most
    accurate setting when none reaches the level."""
    from probes_hub.routing.evaluate import calibrated_setting

    correct = np.array([[1, 1], [0, 1], [0, 1], [1, 1]], dtype=float)  # the best single model: 100%
    decisions = RouterDecisions(np.array([3.0, 2.0, 1.0]), np.array([[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0]]))  # 50%, 75%, 100%
    assert calibrated_setting(decisions, correct, level=0.95) == 1.0
    assert calibrated_setting(decisions, correct, level=0.75) == 2.0
    assert calibrated_setting(decisions, correct, level=0.5) == 3.0
    never = RouterDecisions(np.array([3.0, 2.0]), np.array([[0, 0, 0, 0], [0, 1, 0, 0]]))
    assert calibrated_setting(never, correct, level=0.95) == 2.0
    called = np.zeros((2, 4, 2), dtype=bool)
    called[1] = True
    assert RouterDecisions(np.array([0.0, 1.0]), np.zeros((2, 4), dtype=int), called).paid(np.ones((4, 2))).tolist() == [[0] * 4, [2] * 4]


def test_knn_router_chooses_k_by_cv_and_predicts_the_neighbours_success_rate():
    from probes_hub.routing.knn import NEIGHBOUR_COUNTS, fit_knn

    arithmetic = [f"What is {a} plus {b}?" for a, b in zip(range(3, 15), range(20, 32))]
    history = [f"In which year did the {name} end?" for name in ("Hundred Years' War", "Thirty Years' War", "Seven Years' War", "Cold War",
                                                                   "First World War", "Second World War", "Korean War", "Vietnam War",
                                                                   "Crimean War", "Boer War", "Napoleonic Wars", "War of 1812")]
    outcomes = np.array([[1, 0]] * len(arithmetic) + [[0, 1]] * len(history), dtype=float)  # model 0 knows sums, model 1 history
    router = fit_knn(arithmetic + history, outcomes)
    assert router.k in NEIGHBOUR_COUNTS and router.k <= 19
    p = router.predict(["What is 40 plus 2?", "In which year did the Peloponnesian War end?"])
    assert p.shape == (2, 2) and p[0, 0] > p[0, 1] and p[1, 1] > p[1, 0]
    assert np.all((0 <= p) & (p <= 1))
