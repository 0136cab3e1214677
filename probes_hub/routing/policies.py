"""Routing from predicted success: routers, the accuracy-cost curve and the standard router metrics.

Arrays are ``[questions, models]``: ``p`` predicted success, ``cost`` the cost of calling each model on each
question, ``correct`` the true outcome (evaluation only). Routers decide from ``p`` and each model's
*expected* cost (``expected_cost``, known before answering); they are scored with the actual costs.

Metrics follow their papers: RouteLLM's PGR / APGR / CPT for two-model pools, RouterBench's AIQ (area under
the non-decreasing convex hull of the cost-quality points, over a cost range, divided by its width).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CurvePoint:
    """One router setting: its parameter, accuracy and mean cost per question."""

    setting: float
    accuracy: float
    cost: float


# -- routers: each returns, per question, the chosen model and the cost paid ----------------------------
def route_utility(p: np.ndarray, expected_cost: np.ndarray, lam: float, *, scale: float | None = None) -> np.ndarray:
    """argmax_m p[q, m] - lam * expected_cost[q, m] / scale; ties go to the cheaper model.

    ``expected_cost`` is per model ``[M]`` or per question and model ``[Q, M]``; ``scale`` defaults to the
    largest model's (mean) expected cost, so lambda means the same in both cases.
    """
    cost = np.broadcast_to(expected_cost, p.shape)
    utility = p - lam * cost / (scale or np.max(cost.mean(axis=0)))
    order = np.argsort(cost, axis=1, kind="stable")  # scan cheapest first so argmax keeps the cheapest of equals
    return np.take_along_axis(order, np.argmax(np.take_along_axis(utility, order, axis=1), axis=1)[:, None], axis=1)[:, 0]


def route_cascade(p: np.ndarray, expected_cost: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest first; escalate while p < threshold. Returns (final model, mask of every model called [q, m])."""
    order = np.argsort(expected_cost, kind="stable")
    confident = p[:, order] >= threshold
    confident[:, -1] = True  # the last (most expensive) model answers whatever it predicts
    stop = np.argmax(confident, axis=1)
    called = np.zeros_like(p, dtype=bool)
    called[:, order] = np.arange(len(order))[None, :] <= stop[:, None]
    return order[stop], called


def route_threshold(p_weak: np.ndarray, threshold: float) -> np.ndarray:
    """Two-model router: 1 (strong) when the weak model's predicted success is below the threshold, else 0 (weak)."""
    return (p_weak < threshold).astype(int)


def oracle_choice(correct: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """The cheapest correct model per question (the cheapest model when none is correct)."""
    masked = np.where(correct.astype(bool), cost, np.inf)
    return np.where(np.isfinite(masked).any(axis=1), np.argmin(masked, axis=1), np.argmin(cost, axis=1))


def single_models(correct: np.ndarray, cost: np.ndarray) -> list[CurvePoint]:
    """Accuracy and mean cost of always using each model (setting = model index)."""
    return [CurvePoint(m, float(correct[:, m].mean()), float(cost[:, m].mean())) for m in range(correct.shape[1])]


def random_curve(correct: np.ndarray, cost: np.ndarray, cheap: int, strong: int, steps: int = 11) -> list[CurvePoint]:
    """Expected accuracy/cost of sending a random share s of questions to ``strong`` and the rest to ``cheap``."""
    acc, price = correct.mean(axis=0), cost.mean(axis=0)
    return [CurvePoint(s, float((1 - s) * acc[cheap] + s * acc[strong]), float((1 - s) * price[cheap] + s * price[strong]))
            for s in np.linspace(0, 1, steps)]


def pareto_frontier(points: list[CurvePoint]) -> list[CurvePoint]:
    """Points no other point beats on both accuracy (higher) and cost (lower), sorted by cost."""
    frontier, best = [], -np.inf
    for point in sorted(points, key=lambda q: (q.cost, -q.accuracy)):
        if point.accuracy > best:
            frontier.append(point)
            best = point.accuracy
    return frontier


def convex_hull_curve(points: list[CurvePoint]) -> list[CurvePoint]:
    """Upper convex hull of the (cost, accuracy) points, made non-decreasing in cost (RouterBench's R~)."""
    hull: list[CurvePoint] = []
    for point in pareto_frontier(points):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when it lies on or below the segment a -> point
            if (b.accuracy - a.accuracy) * (point.cost - a.cost) <= (point.accuracy - a.accuracy) * (b.cost - a.cost):
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def aiq(points: list[CurvePoint], cost_range: tuple[float, float]) -> float:
    """Area under the non-decreasing convex hull over ``cost_range``, divided by its width.

    Below the cheapest point the router achieves nothing (0); above the most expensive one it stays flat.
    """
    low, high = cost_range
    if high <= low:
        raise ValueError(f"cost_range must be increasing, got {cost_range}.")
    hull = convex_hull_curve(points)
    grid = np.linspace(low, high, 2001)
    costs = np.array([q.cost for q in hull])
    accs = np.array([q.accuracy for q in hull])
    values = np.where(grid < costs[0], 0.0, np.interp(grid, costs, accs))
    return float(np.trapezoid(values, grid) / (high - low))


def cost_to_reach(points: list[CurvePoint], target_accuracy: float) -> float:
    """The lowest mean cost of any setting reaching ``target_accuracy`` (inf when none does)."""
    costs = [q.cost for q in points if q.accuracy >= target_accuracy - 1e-12]
    return min(costs) if costs else float("inf")


# -- two-model metrics (RouteLLM) -----------------------------------------------------------------------
def pgr_curve(p_weak: np.ndarray, correct_weak: np.ndarray, correct_strong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(call share to strong, performance gap recovered) sending the k least-likely-to-succeed questions to strong, k = 0..n."""
    n = len(p_weak)
    order = np.argsort(p_weak, kind="stable")
    gain = (correct_strong[order] - correct_weak[order]).astype(float)
    accuracy = (correct_weak.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / n
    weak, strong = correct_weak.mean(), correct_strong.mean()
    if strong == weak:
        raise ValueError("PGR is undefined when the weak and strong models have the same accuracy.")
    return np.arange(n + 1) / n, (accuracy - weak) / (strong - weak)


def apgr(p_weak, correct_weak, correct_strong) -> float:
    """Average performance gap recovered over call shares 0..1 (trapezoid)."""
    share, pgr = pgr_curve(p_weak, correct_weak, correct_strong)
    return float(np.trapezoid(pgr, share))


def cpt(p_weak, correct_weak, correct_strong, level: float) -> float:
    """Smallest call share to the strong model that recovers ``level`` (e.g. 0.5) of the gap (inf when never)."""
    share, pgr = pgr_curve(p_weak, correct_weak, correct_strong)
    reached = np.flatnonzero(pgr >= level - 1e-12)
    return float(share[reached[0]]) if reached.size else float("inf")


# -- one question: the app's suggestion -----------------------------------------------------------------
@dataclass(frozen=True)
class Recommendation:
    """The model to call for one question, with its expected accuracy and cost next to the strongest model's."""

    model: str
    p_success: float
    cost: float
    strongest: str
    strongest_p: float
    strongest_cost: float


def recommend(p: dict[str, float], expected_cost: dict[str, float], *, lam: float | None = None, target: float | None = None,
              cost_scale: float | None = None) -> Recommendation:
    """Pick a model for one question: utility p - lam * cost / cost_scale, or the cheapest with p >= target.

    ``cost_scale`` (default: this question's largest cost) should be the pool's largest *mean* cost when
    ``expected_cost`` is specific to the question, so that lambda means the same for every question. With
    ``target``, when no model reaches it the most likely to succeed is chosen. "Strongest" is the model with
    the highest predicted success for this question.
    """
    if (lam is None) == (target is None):
        raise ValueError("Give exactly one of lam= or target=.")
    names = sorted(set(p) & set(expected_cost), key=lambda m: (expected_cost[m], m))
    if not names:
        raise ValueError("No model has both a predicted success and a cost.")
    probs = np.array([p[m] for m in names])
    costs = np.array([expected_cost[m] for m in names])
    if lam is not None:
        pick = int(route_utility(probs[None, :], costs, lam, scale=cost_scale)[0])
    else:
        ok = np.flatnonzero(probs >= target)
        pick = int(ok[0]) if ok.size else int(np.argmax(probs))
    strong = int(np.argmax(probs))
    return Recommendation(names[pick], float(probs[pick]), float(costs[pick]), names[strong], float(probs[strong]), float(costs[strong]))
