"""What the "Route a workload" tab shows for a plan: the summary, the cost-vs-accuracy chart and the share per model (pure views)."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import altair as alt
import pandas as pd

from probes_hub.atomic import atomic_write_text
from probes_hub.constants import UNFAMILIAR_BELOW
from probes_hub.routing.workload import Plan, PlanSummary

from .predict_view import plain

MAX_WORKLOAD_BYTES = 16 * 1024 * 1024
"""Largest workload file the tab reads (the CLI has no such limit; both route at most 5,000 questions per call)."""
PLANS_DIR = Path(tempfile.gettempdir()) / "probes-hub-plans"
PLAN_LIFETIME_S = 3600
"""Plan files offered for download are deleted after an hour (each new plan sweeps the old ones)."""


def summary_markdown(summary: PlanSummary, pool: str, cost_unit: str) -> str:
    """The plan against always using the pool's most accurate and its cheapest model, in a table, then the realised figures."""
    rule = f"target P(correct) >= {summary.target:g}" if summary.target is not None else f"lambda {summary.lam:g}"
    best_cost = summary.singles[summary.best_model][1]
    lines = [f"### Plan for {summary.n} questions in pool **{plain(pool)}** ({rule})",
             f"Expected accuracy **{summary.expected_accuracy:.1%}** at **{summary.cost_ratio:.1%}** of the cost of always using "
             f"{plain(summary.best_model)} ({summary.singles[summary.best_model][0]:.1%}).", "",
             "| | expected accuracy | mean cost | cost ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {plain(name)} | {accuracy:.3f} | {cost:.4g} | {cost / best_cost:.1%} |" for name, accuracy, cost in summary.rows()]
    lines += ["", f"Out of distribution (in-distribution score < {UNFAMILIAR_BELOW}): **{summary.out_of_distribution}** of {summary.n}. "
              f"Costs in {plain(cost_unit)}; expected accuracy is the mean predicted P(correct)."]
    if summary.realised:
        lines += ["", "Realised on the file's recorded outcomes: " + "; ".join(
            f"{plain(name)} accuracy {accuracy:.3f}" + (f", mean cost {cost:.4g}" if cost is not None else "") for name, (accuracy, cost) in summary.realised.items())]
    return "\n".join(lines)


def plan_chart(summary: PlanSummary) -> alt.Chart:
    """Expected accuracy vs mean cost: every pool model sent every question (labelled: the most accurate and the cheapest), and the plan."""
    named = {summary.best_model, summary.cheapest_model}
    singles = pd.DataFrame([{"name": m, "accuracy": a, "cost": c, "kind": "always this model", "label": f"always {m}" if m in named else ""}
                            for m, (a, c) in summary.singles.items()])
    plan = pd.DataFrame([{"name": "the plan", "accuracy": summary.expected_accuracy, "cost": summary.expected_cost, "kind": "the plan",
                          "label": "the plan"}])
    frame = pd.concat([singles, plan], ignore_index=True)
    kinds = alt.Scale(domain=["always this model", "the plan"], range=["#636363", "#e6550d"])
    points = alt.Chart(frame).mark_point(filled=True, size=90).encode(
        x=alt.X("cost:Q", title="expected mean cost per question (log scale)", scale=alt.Scale(type="log")),
        y=alt.Y("accuracy:Q", title="expected accuracy", scale=alt.Scale(zero=False)),
        color=alt.Color("kind:N", title=None, scale=kinds, legend=alt.Legend(orient="bottom")),
        shape=alt.Shape("kind:N", legend=None, scale=alt.Scale(domain=kinds.domain, range=["circle", "diamond"])),
        tooltip=["name", alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("cost:Q", format=".4g")])
    labels = alt.Chart(frame).mark_text(align="left", dx=7, fontSize=11).encode(x="cost:Q", y="accuracy:Q", text="label")
    return alt.layer(points, labels).properties(width=400, height=320)


def shares_frame(summary: PlanSummary) -> pd.DataFrame:
    """Share of the questions sent to each pool model that gets any, largest first."""
    used = {m: v for m, v in summary.shares.items() if v > 0}
    frame = pd.DataFrame({"model": list(used), "share of questions": [f"{v:.1%}" for v in used.values()], "value": list(used.values())})
    return frame.sort_values("value", ascending=False).drop(columns="value").reset_index(drop=True)


def plan_file(plan: Plan) -> Path:
    """The plan as a CSV under :data:`PLANS_DIR` for download (older plans there are deleted)."""
    PLANS_DIR.mkdir(parents=True, exist_ok=True)
    for old in PLANS_DIR.glob("plan-*.csv"):
        if time.time() - old.stat().st_mtime > PLAN_LIFETIME_S:
            old.unlink(missing_ok=True)
    path = PLANS_DIR / f"plan-{uuid.uuid4().hex[:12]}.csv"
    atomic_write_text(path, plan.rows.to_csv(index=False, float_format="%.6g"))
    return path
