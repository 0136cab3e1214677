"""Altair charts shared by the route command, the leaderboard and the app (Vega-Lite specs, saved as JSON + HTML)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from probes_hub.atomic import atomic_write_text
from probes_hub.constants import REPORTS_DIR, SWEEP_REPORT


def routing_chart(curves: dict[str, list], singles: pd.DataFrame, extra_points: pd.DataFrame | None = None, *, title: str) -> alt.Chart:
    """Accuracy vs mean cost: one line per router, the single models as labelled points joined by their Pareto frontier, plus e.g. the oracle."""
    lines = pd.DataFrame([{"router": name, "cost": p.cost, "accuracy": p.accuracy, "setting": p.setting} for name, points in curves.items() for p in points])
    line_layer = alt.Chart(lines).mark_line(point=alt.OverlayMarkDef(size=12)).encode(
        x=alt.X("cost:Q", title="mean cost per question (B active params x output tokens)"), y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False)),
        color="router:N", tooltip=["router", "setting", alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("cost:Q", format=".0f")])
    single_layer = alt.Chart(singles).mark_point(filled=True, color="black").encode(
        x="cost:Q", y="accuracy:Q", tooltip=["model", alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("cost:Q", format=".0f")])
    labels = alt.Chart(singles).mark_text(align="left", dx=5, fontSize=9).encode(x="cost:Q", y="accuracy:Q", text="model")
    frontier = singles.sort_values("cost")
    frontier = frontier[frontier["accuracy"] > frontier["accuracy"].cummax().shift(fill_value=-1.0)]
    frontier_layer = alt.Chart(frontier).mark_line(strokeDash=[4, 3], color="gray").encode(x="cost:Q", y="accuracy:Q")
    layers = [line_layer, frontier_layer, single_layer, labels]
    if extra_points is not None and len(extra_points):
        layers.append(alt.Chart(extra_points).mark_point(shape="diamond", size=120, color="red", filled=True).encode(
            x="cost:Q", y="accuracy:Q", tooltip=["name", "accuracy", "cost"]))
    return alt.layer(*layers).properties(title=title, width=640, height=420).interactive()


def save_chart(chart: alt.Chart, path_stem: str | Path) -> list[Path]:
    """Write ``<stem>.vl.json`` (Vega-Lite spec) and ``<stem>.html`` atomically; returns both paths."""
    stem = Path(path_stem)
    spec, page = stem.with_suffix(".vl.json"), stem.with_suffix(".html")
    atomic_write_text(spec, chart.to_json())
    atomic_write_text(page, chart.to_html())
    return [spec, page]


def leaderboard_charts(table: pd.DataFrame, registry_root: str | None = None) -> dict[str, alt.Chart]:
    """Metric by model x dataset with CI bars, probe vs baselines, and per-layer test curves from the sweep reports."""
    ok = table[table["status"] == "ok"].copy()
    ok["target"] = ok["dataset"] + " / " + ok["label"]
    base = alt.Chart(ok).encode(y=alt.Y("target:N", title=None), color="probe_type:N", yOffset="probe_type:N")
    metric = alt.layer(base.mark_point(filled=True).encode(x=alt.X("value:Q", title="test metric (Spearman or ROC-AUC)"),
                                                            tooltip=["name", "metric", alt.Tooltip("value:Q", format=".3f"), "n"]),
                       base.mark_rule().encode(x="low:Q", x2="high:Q")).facet(column=alt.Column("model:N", title=None))
    linear = ok[ok["probe_type"] == "linear"]
    baselines = alt.Chart(linear).mark_bar().encode(
        x=alt.X("delta_over_best_baseline:Q", title="linear probe minus best baseline"), y=alt.Y("target:N", sort="-x", title=None),
        color=alt.condition("datum.delta_over_best_baseline > 0", alt.value("#4c78a8"), alt.value("#e45756")),
        tooltip=["name", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("baseline_length:Q", format=".3f"), alt.Tooltip("baseline_tfidf:Q", format=".3f")])
    charts = {"metric_by_model_dataset": metric, "baseline_comparison": baselines.properties(width=420)}
    if registry_root:
        curves = _layer_curves(linear, Path(registry_root))
        if len(curves):
            charts["layer_curves"] = alt.Chart(curves).mark_line(point=True).encode(
                x="layer:Q", y=alt.Y("test_score:Q", scale=alt.Scale(zero=False)), color="target:N",
                tooltip=["target", "layer", alt.Tooltip("test_score:Q", format=".3f"), alt.Tooltip("cv_score:Q", format=".3f")]
            ).properties(width=520, height=320, title="test score per layer at the selected position (reported, never used for selection)")
    return charts


def _layer_curves(linear: pd.DataFrame, root: Path) -> pd.DataFrame:
    frames = []
    for row in linear.itertuples():
        path = root / row.name / REPORTS_DIR / SWEEP_REPORT
        if path.exists():
            sweep = pd.read_csv(path)
            sweep = sweep[sweep["position"] == row.position].assign(target=f"{row.dataset} / {row.label}")
            frames.append(sweep[["target", "layer", "test_score", "cv_score"]])
    return pd.concat(frames) if frames else pd.DataFrame()


def overview_charts(cells: pd.DataFrame) -> dict[str, alt.Chart]:
    """The model x task view's charts from :func:`probes_hub.matrix.model_task_cells`: heatmap, per-task CIs, scaling (none without cells)."""
    if cells.empty:
        return {}
    return {"model_task_matrix": matrix_chart(cells), "task_ci": task_ci_chart(cells), "scaling": scaling_chart(cells)}


def matrix_chart(cells: pd.DataFrame) -> alt.Chart:
    """The model x task matrix as a heatmap: each cell's score written in it, its CI and n on hover, the best per column outlined."""
    order = list(dict.fromkeys(cells["source"]))
    frame = cells.assign(label=[f"{v:.3f}" for v in cells["value"]], ci=[f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "recorded, no CI"
                                                                         for lo, hi in zip(cells["low"], cells["high"])])
    base = alt.Chart(frame).encode(x=alt.X("task:N", title=None, axis=alt.Axis(labelAngle=-20, orient="top")),
                                   y=alt.Y("source:N", sort=order, title=None))
    tooltip = ["source", "task", alt.Tooltip("value:Q", format=".3f"), "ci", alt.Tooltip("n:Q", format=".0f"), "labels", "probe_type"]
    heat = base.mark_rect().encode(color=alt.Color("value:Q", scale=alt.Scale(scheme="blues"), title="test metric"), tooltip=tooltip)
    best = base.transform_filter("datum.best").mark_rect(fill=None, stroke="#e6550d", strokeWidth=3)
    text = base.mark_text(fontSize=13).encode(text="label:N", color=alt.condition("datum.value > 0.6", alt.value("white"), alt.value("black")),
                                              tooltip=tooltip)
    return alt.layer(heat, best, text).properties(width=alt.Step(120), height=alt.Step(34),
                                                  title="Test Spearman / ROC-AUC by source model and task (orange: best per task; rows by mean rank)")


def task_ci_chart(cells: pd.DataFrame) -> alt.Chart:
    """Each task's scores with their 95% CIs, one small panel per task (fits one screen whatever the number of probes)."""
    order = list(dict.fromkeys(cells["source"]))
    base = alt.Chart(cells).encode(y=alt.Y("source:N", sort=order, title=None), color=alt.Color("kind:N", title=None))
    points = base.mark_point(filled=True, size=60).encode(x=alt.X("value:Q", scale=alt.Scale(zero=False), title="test metric"),
                                                          tooltip=["source", "task", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("n:Q", format=".0f")])
    return alt.layer(base.mark_rule().encode(x="low:Q", x2="high:Q"), points).properties(width=220, height=alt.Step(16)).facet(
        facet=alt.Facet("task:N", title=None), columns=3).resolve_scale(x="independent")


def scaling_chart(cells: pd.DataFrame) -> alt.Chart:
    """Test metric against the source's parameter count, per task: the LLMs (and the sentence encoder as a text-only reference)."""
    frame = cells[cells["parameters"].notna()]
    base = alt.Chart(frame).encode(x=alt.X("parameters:Q", scale=alt.Scale(type="log"), title="parameters (log scale)"),
                                   y=alt.Y("value:Q", scale=alt.Scale(zero=False), title="test metric"), color=alt.Color("task:N"))
    lines = base.transform_filter("datum.kind == 'model'").mark_line(point=True)
    points = base.mark_point(filled=True, size=70).encode(shape=alt.Shape("kind:N", title=None),
                                                         tooltip=["source", "task", alt.Tooltip("value:Q", format=".3f"),
                                                                  alt.Tooltip("parameters:Q", format=",.0f")])
    return alt.layer(lines, points).properties(width=420, height=300, title="Scaling: test metric vs parameters, per task")
