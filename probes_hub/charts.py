"""Altair charts shared by the route command, the leaderboard and the app (Vega-Lite specs, saved as JSON + HTML)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from probes_hub.cache import atomic_write_text
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
