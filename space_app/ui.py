"""The Gradio Blocks app: Predict, Leaderboard, Upload and About tabs over one shared model and registry."""

from __future__ import annotations

import math
from dataclasses import dataclass

import altair as alt
import gradio as gr
import pandas as pd

from probes_hub.charts import leaderboard_charts
from probes_hub.hub.registry import Registry
from probes_hub.hub.validation import ProbeValidationError

from .content import ABOUT, EXAMPLES
from .leaderboard_view import FILTERS, TITLES, chart_rows, display_table, filter_table, read_leaderboard_source, refreshed_at, source_version
from .model_worker import ModelWorkerError
from .predictor import Prediction, Predictor
from .upload import accept_upload


@dataclass
class AppContext:
    """What every callback shares: the predictor (model + probes), the registry, and where the leaderboard lives."""

    predictor: Predictor
    registry: Registry
    leaderboard_source: str | None
    scheduler: object | None = None


def success_chart(prediction: Prediction) -> alt.Chart:
    frame = pd.DataFrame([{"model": r.label.removeprefix("correct:"), "p_success": r.value, "test_auc": r.metric.get("value")} for r in prediction.success])
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("p_success:Q", scale=alt.Scale(domain=[0, 1]), title="P(correct)"), y=alt.Y("model:N", sort="-x", title=None),
        tooltip=["model", alt.Tooltip("p_success:Q", format=".2f"), alt.Tooltip("test_auc:Q", format=".3f")]
    ).properties(height=max(120, 16 * len(frame)), width=420, title="Predicted success per model")


def layer_chart(prediction: Prediction) -> alt.Chart:
    frame = pd.DataFrame([{"probe": name, "layer": layer, "reading": value} for name, (layers, values) in prediction.layerwise.items()
                          for layer, value in zip(layers, values)])
    return alt.Chart(frame).mark_line(point=True).encode(x="layer:Q", y=alt.Y("reading:Q", scale=alt.Scale(zero=False)), color="probe:N",
                                                          tooltip=["probe", "layer", alt.Tooltip("reading:Q", format=".2f")]
                                                          ).properties(height=240, width=420, title="Difficulty read at every layer")


def difficulty_markdown(prediction: Prediction) -> str:
    lines = []
    for r in prediction.difficulty:
        m = r.metric
        trust = f"test {m['name']} {m['value']:.2f} [{m['low']:.2f}, {m['high']:.2f}], n={m['n']}" if m else "no test metric"
        low, high = r.label_range
        shown = min(max(r.value, low), high)
        raw = "" if shown == r.value else f", raw reading {r.value:.1f}"
        familiar = "" if math.isnan(r.in_distribution) else f" · in-distribution {r.in_distribution:.2f}"
        warning = " · ⚠️ this question is unlike what this probe was trained on" if r.unfamiliar else ""
        lines.append(f"- **{r.dataset} {r.label}**: {shown:.1f} of {low:g} to {high:g}{raw} · {trust}{familiar}{warning}")
    return "\n".join(lines) or "No difficulty probe for this model."


UTILITY, CHEAPEST = "utility", "cheapest"
ROUTING_RULES = [("utility: p - lambda x cost", UTILITY), ("cheapest with p >= target", CHEAPEST)]
"""Radio choices as (label, value): callbacks key on the value, never on the display text."""


def routing_markdown(ctx: AppContext, prediction: Prediction, mode: str, lam: float, target: float) -> tuple[str, dict | None]:
    rec = ctx.predictor.route(prediction, lam=lam if mode == UTILITY else None, target=target if mode == CHEAPEST else None)
    if rec is None:
        return "No routing: none of the success probes' models has a cost in the pool.", None
    saving = 1 - rec.cost / rec.strongest_cost if rec.strongest_cost else 0.0
    text = (f"**Route to {rec.model}**: P(correct) {rec.p_success:.2f}, expected cost {rec.cost:,.0f} "
            f"vs. the most likely model {rec.strongest} (P {rec.strongest_p:.2f}, cost {rec.strongest_cost:,.0f}): {saving:.0%} cheaper.")
    if prediction.length_factor != 1.0:
        text += (f" Costs are each model's mean cost x {prediction.length_factor:.2f}, this question's predicted answer length "
                 "relative to the average.")
    return text, {"model": rec.model, "p_success": rec.p_success, "cost": rec.cost, "strongest": rec.strongest,
                  "strongest_p_success": rec.strongest_p, "strongest_cost": rec.strongest_cost}


def build_demo(ctx: AppContext) -> gr.Blocks:
    """All tabs, wired to ``ctx``; the caller launches (with a queue)."""
    with gr.Blocks(title="Difficulty probes") as demo:
        gr.Markdown(f"# Difficulty probes\nPredict, before **{ctx.predictor.source.display_id}** writes a token, how hard a question is and which model will get it right.")
        with gr.Tab("Predict"):
            with gr.Row():
                with gr.Column(scale=3):
                    question = gr.Textbox(label="Question", lines=4, placeholder="Type a question...", elem_id="question")
                    gr.Examples(EXAMPLES, inputs=question)
                with gr.Column(scale=2):
                    mode = gr.Radio(ROUTING_RULES, value=UTILITY, label="Routing rule")
                    lam = gr.Slider(0, 2, value=0.3, step=0.01, label="lambda (cost weight)")
                    target = gr.Slider(0.3, 0.99, value=0.7, step=0.01, label="target P(correct)")
                    button = gr.Button("Predict", variant="primary", elem_id="predict")
            status = gr.Markdown(elem_id="status")
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Difficulty")
                    difficulty = gr.Markdown(elem_id="difficulty")
                    gr.Markdown("### Routing suggestion")
                    routing = gr.Markdown(elem_id="routing")
                    layers_plot = gr.Plot(label="Layer-wise reading", elem_id="layers-plot")
                with gr.Column():
                    success_plot = gr.Plot(label="Success", elem_id="success-plot")
            with gr.Accordion("Raw output (JSON)", open=False):
                raw = gr.JSON(elem_id="raw")

            def on_predict(text: str, mode_value: str, lam_value: float, target_value: float):
                try:
                    prediction = ctx.predictor.predict(text)
                except (ValueError, ModelWorkerError) as error:
                    raise gr.Error(str(error)) from error
                route_text, route = routing_markdown(ctx, prediction, mode_value, lam_value, target_value)
                notice = " ".join(prediction.notices)
                status_text = (f"Forward pass {prediction.forward_ms:.0f} ms ({prediction.n_tokens} tokens, stopped after layer "
                               f"{max(ctx.predictor.layers) if ctx.predictor.layers else '-'}), probes {prediction.probes_ms:.0f} ms. {notice}")
                payload = {"difficulty": [{"probe": r.name, "value": r.value, "range": list(r.label_range), "test_metric": r.metric,
                                           "in_distribution": None if math.isnan(r.in_distribution) else r.in_distribution} for r in prediction.difficulty],
                           "in_distribution": {r.label.removeprefix("correct:"): r.in_distribution for r in prediction.success if not math.isnan(r.in_distribution)},
                           "success": prediction.success_by_model(), "routing": route, "latency_ms": {"forward": prediction.forward_ms, "probes": prediction.probes_ms},
                           "truncated": prediction.truncated}
                return (status_text, difficulty_markdown(prediction), route_text, layer_chart(prediction) if prediction.layerwise else None,
                        success_chart(prediction) if prediction.success else None, payload)

            predict_event = dict(fn=on_predict, inputs=[question, mode, lam, target], outputs=[status, difficulty, routing, layers_plot, success_plot, raw])
            button.click(**predict_event, api_name="predict")
            question.submit(**predict_event, api_name=False)

        with gr.Tab("Leaderboard") as leaderboard_tab:
            refreshed = gr.Markdown(elem_id="refreshed")
            with gr.Row():
                search = gr.Textbox(label="Search probe name", scale=2)
                f_model, f_dataset, f_label, f_type = (gr.Dropdown(["all"], value="all", label=name, allow_custom_value=True)
                                                       for name in ("model", "dataset", "label", "probe type"))
            table = gr.Dataframe(interactive=False, wrap=True, elem_id="leaderboard-table")
            chart = gr.Plot(label="Test metric by dataset and label (95% CI)")

            seen_version = gr.State(None)

            def show_leaderboard(search_value="", model_value="all", dataset_value="all", label_value="all", type_value="all"):
                leaderboard = read_leaderboard_source(ctx.leaderboard_source)
                full = display_table(ctx.registry, leaderboard)
                shown = filter_table(full, model=model_value, dataset=dataset_value, label=label_value, probe_type=type_value, search=search_value)
                charts = leaderboard_charts(chart_rows(shown)) if len(shown) else {}
                choices = [gr.Dropdown(choices=["all", *sorted(full[column].dropna().unique())]) for column in (TITLES[name] for name in FILTERS)]
                return (refreshed_at(leaderboard, ctx.registry), shown, charts.get("metric_by_model_dataset"), *choices,
                        source_version(ctx.leaderboard_source))

            def refresh_if_changed(version, *filter_values):
                """Re-read the leaderboard only when its file changed (mtime or Hub etag) since this tab last showed it."""
                if source_version(ctx.leaderboard_source) == version:
                    return tuple(gr.skip() for _ in outputs)
                return show_leaderboard(*filter_values)

            filters = [search, f_model, f_dataset, f_label, f_type]
            outputs = [refreshed, table, chart, f_model, f_dataset, f_label, f_type, seen_version]
            for control in filters:
                control.change(show_leaderboard, inputs=filters, outputs=outputs, api_name=False)
            leaderboard_tab.select(show_leaderboard, inputs=filters, outputs=outputs, api_name="leaderboard")
            gr.Timer(5).tick(refresh_if_changed, inputs=[seen_version, *filters], outputs=outputs, api_name=False)

        with gr.Tab("Upload"):
            gr.Markdown("Upload a probe folder as a **.zip**, or its files (config.json, model.safetensors, README.md). It is validated "
                        "(schema, safetensors only, shapes against the model's hidden size, size limit), re-evaluated on its test split when "
                        f"the dataset is here, and added to `{ctx.registry.spec}`.")
            files = gr.File(file_count="multiple", label="Probe files or zip", elem_id="upload-files")
            upload_button = gr.Button("Validate and add", elem_id="upload-button")
            upload_status = gr.Markdown(elem_id="upload-status")

            def on_upload(paths):
                try:
                    result = accept_upload([p if isinstance(p, str) else p.name for p in (paths or [])], ctx.registry, ctx.predictor.source)
                except (ProbeValidationError, ValueError, OSError, ModelWorkerError) as error:
                    raise gr.Error(f"Rejected: {error}") from error
                ctx.predictor.reload()
                return f"✅ {result.message}"

            upload_button.click(on_upload, inputs=files, outputs=upload_status, api_name="upload")

        with gr.Tab("About"):
            gr.Markdown(ABOUT)
    return demo
