"""The Gradio Blocks app: Predict, Leaderboard, Inside the model, Upload and About tabs over one shared model and registry."""

from __future__ import annotations

import math
import re
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import gradio as gr
import pandas as pd

from probes_hub.charts import leaderboard_charts, overview_charts
from probes_hub.constants import UNFAMILIAR_BELOW
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.extract.models import display_id_for
from probes_hub.hub.registry import Registry
from probes_hub.leaderboard import leaderboard_table, task_metrics_of
from probes_hub.matrix import model_task_cells
from probes_hub.routing.suggest import Suggestion
from probes_hub.schema.validation import ProbeValidationError

from .content import ABOUT, EXAMPLES
from .inside_tab import build_inside_tab
from .leaderboard_view import (
    FILTERS,
    TITLES,
    LeaderboardReader,
    chart_rows,
    display_table,
    filter_table,
    refreshed_at,
    source_version,
)
from .model_worker import ModelWorkerError
from .predictor import Prediction, Predictor, Reading
from .upload import accept_upload

MAX_LAMBDA = 10.0
PREDICT_CONCURRENCY = 32
"""Predictions handled at once; the predictor batches them into shared forward passes."""
DELETE_CACHE = (600, 3600)
"""Every 10 minutes, delete uploaded files older than an hour from Gradio's cache."""


class CheckedBlocks(gr.Blocks):
    """Blocks whose endpoints refuse a call with the wrong number of inputs with a message naming the inputs they take
    (Gradio itself ignores extra inputs and answers too few with an error that lists component objects)."""

    def validate_inputs(self, block_fn, inputs: list) -> None:
        if len(inputs) != len(block_fn.inputs):
            names = ", ".join(str(getattr(block, "label", None) or type(block).__name__) for block in block_fn.inputs)
            endpoint = f"/{block_fn.api_name}" if isinstance(block_fn.api_name, str) else "This event"
            raise gr.Error(f"{endpoint} takes {len(block_fn.inputs)} input(s), in this order: {names}; got {len(inputs)}.")


@dataclass
class AppContext:
    """What every callback shares: the predictor (model + probes), the registry, where the leaderboard lives, and the
    evaluation lane (a second model, started on the first upload, so that re-evaluating uploads never delays predictions)."""

    predictor: Predictor
    registry: Registry
    leaderboard_source: str | None
    scheduler: object | None = None
    model: str = ""
    """The active source model's spec (an alias such as ``smollm2``)."""
    models: list[str] = field(default_factory=list)
    """The source models the Predict tab offers: the configured one and the installed packaged ones."""
    start_source: Callable[[str], FeatureSource] | None = None
    make_predictor: Callable[[FeatureSource], Predictor] | None = None
    separate_evaluation: bool = False
    """Re-evaluate uploads on a second model worker (the evaluation lane) rather than the predictor's own source."""
    leaderboard: LeaderboardReader = field(default_factory=LeaderboardReader)
    _evaluation_source: FeatureSource | None = None
    _switch_lock: threading.Lock = field(default_factory=threading.Lock)

    def evaluation_source(self) -> FeatureSource:
        if self._evaluation_source is None:
            self._evaluation_source = self.start_source(self.model) if self.separate_evaluation and self.start_source else self.predictor.source
        return self._evaluation_source

    def use_model(self, model: str) -> None:
        """Make ``model`` the active source model: one loaded at a time (the previous one's worker is closed, bounding memory)."""
        if model not in self.models:
            raise ValueError(f"Unknown source model {str(model)[:60]!r}; choose one of {', '.join(self.models)}.")
        with self._switch_lock:
            if model == self.model:
                return
            previous = [self.predictor.source, self._evaluation_source]
            self.predictor = self.make_predictor(self.start_source(model))
            self.model, self._evaluation_source = model, None
            for source in previous:
                if source is not None and hasattr(source, "close") and source is not self.predictor.source:
                    source.close()

    def health(self) -> dict:
        """The model worker's state (or ``in process``), the probes read, and the registry entries that could not be used."""
        status = getattr(self.predictor.source, "status", None)
        return {"model": self.predictor.source.display_id, "source_model": self.model, "models": self.models,
                "worker": status() if status else {"state": "in process"},
                "probes": len(self.predictor.probes or {}), "problems": dict(self.predictor.problems)}


def plain(text: str) -> str:
    """Text shown inside Markdown as written: Markdown and HTML characters escaped (names and messages can come from uploads)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", str(text))


def refusal(message: str) -> gr.Error:
    """The error a callback raises for input it refuses: shown to the user (or raised in API clients), no traceback in the log."""
    return gr.Error(message, print_exception=False)


def finite_number(value: object, name: str, low: float, high: float) -> float:
    """A slider value from the UI or the API: a real number within [low, high], else a ValueError saying what to send."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}; got {str(value)[:40]!r}.")
    return float(value)


def success_chart(prediction: Prediction, suggestion: Suggestion | None) -> alt.Chart | None:
    """P(correct) per model: the chosen pool's models when there is a suggestion, else every success probe."""
    readings = {r.label.removeprefix("correct:"): r for r in prediction.success}
    if suggestion is not None:
        rows = [{"model": m, "p_success": p, "test_auc": readings[m].metric.get("value") if m in readings else None,
                 "suggested": m == suggestion.model} for m, p in suggestion.p_correct.items()]
    else:
        rows = [{"model": m, "p_success": r.value, "test_auc": r.metric.get("value"), "suggested": False} for m, r in readings.items()]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("p_success:Q", scale=alt.Scale(domain=[0, 1]), title="P(correct)"), y=alt.Y("model:N", sort="-x", title=None),
        color=alt.Color("suggested:N", legend=None, scale=alt.Scale(domain=[False, True], range=["#9ecae1", "#e6550d"])),
        tooltip=["model", alt.Tooltip("p_success:Q", format=".2f"), alt.Tooltip("test_auc:Q", format=".3f", title="probe test AUC")]
    ).properties(height=max(120, 16 * len(frame)), width=420, title="Predicted success per model (orange: the suggestion)")


def layer_chart(prediction: Prediction) -> alt.Chart:
    frame = pd.DataFrame([{"probe": name, "layer": layer, "reading": value} for name, (layers, values) in prediction.layerwise.items()
                          for layer, value in zip(layers, values)])
    return alt.Chart(frame).mark_line(point=True).encode(x="layer:Q", y=alt.Y("reading:Q", scale=alt.Scale(zero=False)), color="probe:N",
                                                          tooltip=["probe", "layer", alt.Tooltip("reading:Q", format=".2f")]
                                                          ).properties(height=240, width=420, title="Difficulty read at every layer")


HUMAN_TERMS = {
    "level": lambda value, low, high, where: f"MATH level {value:.1f} of {high:.0f}",
    "grade": lambda value, low, high, where: f"school grade {value:.1f} (range {low:.0f} to {high:.0f})",
    "steps": lambda value, low, high, where: f"about {value:.1f} solution steps",
    "log_output_chars": lambda value, low, high, where: f"predicted answer length ~{math.exp(value):,.0f} characters",
    "success_rate": lambda value, low, high, where: f"{value:.0%} of the benchmark's models would answer correctly",
    "irt_difficulty": lambda value, low, high, where: f"IRT difficulty: {where or f'{value:.1f}'}",
}
"""How each known label reads in its own terms (value clipped to the label's training range)."""


def describe(reading: Reading) -> str:
    """A difficulty reading in the label's own human terms, e.g. "MATH level 3.2 of 5" or "harder than 80% of MATH-500"."""
    low, high = reading.label_range
    value = min(max(reading.value, low), high)
    where = f"harder than {reading.percentile:.0%} of its {reading.dataset} questions" if not math.isnan(reading.percentile) else ""
    if reading.label in HUMAN_TERMS:
        return HUMAN_TERMS[reading.label](value, low, high, where)
    return f"{value:.2f} on a scale of {low:.1f} to {high:.1f}" + (f" ({where})" if where else "")


def difficulty_markdown(prediction: Prediction) -> str:
    lines = []
    for r in prediction.difficulty:
        m = r.metric
        trust = f"test {m['name']} {m['value']:.2f} [{m['low']:.2f}, {m['high']:.2f}], n={m['n']}" if m else "no test metric"
        familiar = "" if math.isnan(r.in_distribution) else f" · in-distribution {r.in_distribution:.2f}"
        warning = " · ⚠️ this question is unlike what this probe was trained on" if r.unfamiliar else ""
        p = r.partial_length
        beyond = f" · beyond length: partial ρ {p['value']:.2f} [{p['low']:.2f}, {p['high']:.2f}]" if p else ""
        if r.mostly_length:
            beyond = " · ⚠️ this reading is mostly question length" + (f" (partial ρ given length {p['value']:.2f} [{p['low']:.2f}, {p['high']:.2f}])" if p else "")
        lines.append(f"- **{plain(r.dataset)} {plain(r.label)}** ({plain(r.probe_type)}): {plain(describe(r))} · {trust}{beyond}{familiar}{warning}")
    return "\n".join(lines) or "No difficulty probe for this model."


UTILITY, CHEAPEST = "utility", "cheapest"
ROUTING_RULES = [("utility: p - lambda x cost", UTILITY), ("cheapest with p >= target", CHEAPEST)]
"""Radio choices as (label, value): callbacks key on the value, never on the display text."""


def routing_markdown(suggestion: Suggestion | None, pool: str, pool_dataset: str | None = None) -> str:
    if suggestion is None:
        return f"No routing: the registry lacks a success probe for some model of pool '{pool}' on this model."
    p = suggestion.p_correct
    text = (f"**Route to {suggestion.model}**: P(correct) {p[suggestion.model]:.2f}, expected cost {suggestion.cost_ratio:.1%} of the pool's most "
            f"accurate model {suggestion.most_accurate} (P {p[suggestion.most_accurate]:.2f}): {1 - suggestion.cost_ratio:.0%} cheaper.")
    if suggestion.length_factor != 1.0:
        text += f" Costs are each model's mean cost x {suggestion.length_factor:.2f}, this question's predicted answer length relative to the average."
    if pool_dataset and suggestion.probes_dataset != pool_dataset:
        text += (f" The question is unlike the pool's {pool_dataset} training questions, so the probabilities come from the probes "
                 f"trained on every benchmark ({suggestion.probes_dataset}).")
    if suggestion.in_distribution < UNFAMILIAR_BELOW:
        text += f" ⚠️ In-distribution score {suggestion.in_distribution:.2f}: this question is unlike what these probes were trained on."
    return text


def build_demo(ctx: AppContext) -> gr.Blocks:
    """All tabs, wired to ``ctx``; the caller launches (with a queue)."""
    with CheckedBlocks(title="Difficulty probes", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"# Difficulty probes\nPredict, before **{ctx.predictor.source.display_id}** writes a token, how hard a question is and which model will get it right.")
        with gr.Tab("Predict"):
            with gr.Row():
                with gr.Column(scale=3):
                    question = gr.Textbox(label="Question", lines=4, placeholder="Type a question...", elem_id="question")
                    gr.Examples(EXAMPLES, inputs=question)
                with gr.Column(scale=2):
                    source_model = gr.Dropdown([(display_id_for(m), m) for m in ctx.models], value=ctx.model, elem_id="source-model",
                                               label="Source model (the LLM whose activations the probes read; switching loads it)",
                                               interactive=len(ctx.models) > 1)
                    pools = list(ctx.predictor.pools)
                    pool = gr.Dropdown(pools, value=pools[0] if pools else None, label="Route within pool", elem_id="pool")
                    mode = gr.Radio(ROUTING_RULES, value=UTILITY, label="Routing rule")
                    lam = gr.Slider(0, 2, value=ctx.predictor.pools[pools[0]].default_lambda if pools else 0.2, step=0.01,
                                    label="lambda (cost weight; the pool's default is set so that easy and hard questions go to different models)")
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

            def on_predict(text: str, pool_name: str, mode_value: str, lam_value: float, target_value: float):
                predictor = ctx.predictor  # the active source model's, for the whole call even if another user switches meanwhile
                try:
                    if predictor.pools and pool_name not in predictor.pools:
                        raise ValueError(f"Unknown pool {str(pool_name)[:60]!r}; choose one of {', '.join(predictor.pools) or 'none'}.")
                    if mode_value not in (UTILITY, CHEAPEST):
                        raise ValueError(f"Routing rule must be {UTILITY!r} or {CHEAPEST!r}; got {str(mode_value)[:40]!r}.")
                    lam_value = finite_number(lam_value, "lambda", 0.0, MAX_LAMBDA)
                    target_value = finite_number(target_value, "target", 0.0, 1.0)
                    prediction = predictor.predict(text)
                    suggestion = predictor.route(prediction, pool_name, lam=lam_value if mode_value == UTILITY else None,
                                                     target=target_value if mode_value == CHEAPEST else None)
                except (ValueError, ModelWorkerError) as error:
                    raise refusal(str(error)) from error
                except Exception as error:  # a bug: logged with its traceback, reported to the user in one line
                    traceback.print_exc()
                    raise refusal(f"The prediction failed ({type(error).__name__}); please retry. If it persists, report it.") from error
                notice = plain(" ".join(prediction.notices))
                batch = f", batched with {prediction.batch_size - 1} other question(s)" if prediction.batch_size > 1 else ""
                status_text = (f"Forward pass {prediction.forward_ms:.0f} ms ({prediction.n_tokens} tokens, stopped after layer "
                               f"{max(predictor.layers) if predictor.layers else '-'}{batch}), probes {prediction.probes_ms:.0f} ms. {notice}")
                payload = {"difficulty": [{"probe": r.name, "probe_type": r.probe_type, "value": r.value, "range": list(r.label_range), "test_metric": r.metric, "description": describe(r),
                                           "in_distribution": None if math.isnan(r.in_distribution) else r.in_distribution,
                                           "beyond_length": r.partial_length or None, "mostly_length": r.mostly_length} for r in prediction.difficulty],
                           "in_distribution": {r.name: r.in_distribution for r in prediction.success if not math.isnan(r.in_distribution)},
                           "success": {r.name: r.value for r in prediction.success},
                           "routing": suggestion.to_json() if suggestion else None,
                           "latency_ms": {"forward": prediction.forward_ms, "probes": prediction.probes_ms}, "batch_size": prediction.batch_size,
                           "truncated": prediction.truncated, "notices": prediction.notices}
                return (status_text, difficulty_markdown(prediction), routing_markdown(suggestion, pool_name, getattr(predictor.pools.get(pool_name), "dataset", None)),
                        layer_chart(prediction) if prediction.layerwise else None, success_chart(prediction, suggestion), payload)

            predict_event = dict(fn=on_predict, inputs=[question, pool, mode, lam, target], outputs=[status, difficulty, routing, layers_plot, success_plot, raw],
                                 preprocess=False)  # on_predict checks the raw values itself, so that any bad value gets its own clear message
            button.click(**predict_event, api_name="predict", concurrency_limit=PREDICT_CONCURRENCY, concurrency_id="predict")
            question.submit(**predict_event, api_name=False, concurrency_limit=PREDICT_CONCURRENCY, concurrency_id="predict")
            def on_model(model: str) -> str:
                try:
                    ctx.use_model(model)
                except (ValueError, ModelWorkerError, OSError) as error:
                    raise refusal(str(error)) from error
                return f"Source model: **{plain(ctx.predictor.source.display_id)}** (its probes load with the next prediction)."

            source_model.change(on_model, inputs=source_model, outputs=status, api_name="use_model", concurrency_limit=1, concurrency_id="model",
                                preprocess=False)  # on_model checks the name itself
            pool.change(lambda name: gr.Slider(value=ctx.predictor.pools[name].default_lambda) if name in ctx.predictor.pools else gr.skip(),
                        inputs=pool, outputs=lam, api_name=False)

        with gr.Tab("Leaderboard") as leaderboard_tab:
            refreshed = gr.Markdown(elem_id="refreshed")
            matrix_plot = gr.Plot(label="Which model's internal state knows each task best", elem_id="matrix-plot")
            with gr.Accordion("Per-task scores with 95% CIs, and scaling with model size", open=False):
                with gr.Row():
                    task_ci_plot = gr.Plot(label="Per task (95% CI)", elem_id="task-ci-plot")
                    scaling_plot = gr.Plot(label="Scaling", elem_id="scaling-plot")
            gr.Markdown("### Every probe")
            with gr.Row():
                search = gr.Textbox(label="Search probe name", scale=2)
                f_model, f_dataset, f_label, f_type = (gr.Dropdown(["all"], value="all", label=name, allow_custom_value=True)
                                                       for name in ("model", "dataset", "label", "probe type"))
            table = gr.Dataframe(interactive=False, wrap=True, elem_id="leaderboard-table")
            chart = gr.Plot(label="Test metric by dataset and label (95% CI)")

            seen_version = gr.State(None)

            def show_leaderboard(search_value="", model_value="all", dataset_value="all", label_value="all", type_value="all"):
                leaderboard, notice = ctx.leaderboard.read(ctx.leaderboard_source)
                library = leaderboard_table(ctx.registry, leaderboard, problems=ctx.predictor.problems)
                full = display_table(library)
                shown = filter_table(full, model=model_value, dataset=dataset_value, label=label_value, probe_type=type_value, search=search_value)
                charts = leaderboard_charts(chart_rows(shown)) if len(shown) else {}
                choices = [gr.Dropdown(choices=["all", *sorted(full[column].dropna().unique())]) for column in (TITLES[name] for name in FILTERS)]
                overview = overview_charts(model_task_cells(library, task_metrics_of(leaderboard)))  # every model and task: the filters act on the table only
                return (plain(" ".join(filter(None, [notice, refreshed_at(leaderboard, ctx.registry)]))), overview.get("model_task_matrix"),
                        overview.get("task_ci"), overview.get("scaling"), shown, charts.get("metric_by_model_dataset"), *choices,
                        source_version(ctx.leaderboard_source))

            def refresh_if_changed(version, *filter_values):
                """Re-read the leaderboard only when its file changed (mtime or Hub etag) since this tab last showed it."""
                if source_version(ctx.leaderboard_source) == version:
                    return tuple(gr.skip() for _ in outputs)
                return show_leaderboard(*filter_values)

            filters = [search, f_model, f_dataset, f_label, f_type]
            outputs = [refreshed, matrix_plot, task_ci_plot, scaling_plot, table, chart, f_model, f_dataset, f_label, f_type, seen_version]
            for control in filters:
                control.change(show_leaderboard, inputs=filters, outputs=outputs, api_name=False)
            leaderboard_tab.select(show_leaderboard, inputs=filters, outputs=outputs, api_name="leaderboard")
            gr.Timer(5).tick(refresh_if_changed, inputs=[seen_version, *filters], outputs=outputs, api_name=False)

        build_inside_tab(ctx, refusal)

        with gr.Tab("Upload"):
            gr.Markdown("Upload a probe folder as a **.zip**, or its files (config.json, model.safetensors). It must be trained on a built-in "
                        "dataset for this app's model. It is checked completely first (files, schema, values, weights' dtype and shape against the "
                        "model), then re-evaluated here on a fixed sample of its dataset's test split; only the re-evaluated metrics are stored. "
                        "An upload never replaces a probe: when its name is taken it is added as the next version (`-v2`, `-v3`, ...). "
                        f"Probes go to `{plain(ctx.registry.spec)}`.")
            files = gr.File(file_count="multiple", label="Probe files or zip", elem_id="upload-files")
            upload_button = gr.Button("Validate and add", elem_id="upload-button")
            upload_status = gr.Markdown(elem_id="upload-status")

            def on_upload(paths):
                try:
                    paths = [p if isinstance(p, str) else p.name for p in (paths or [])]
                    result = accept_upload(paths, ctx.registry, ctx.predictor.source, ctx.evaluation_source())
                except (ProbeValidationError, ValueError, OSError, ModelWorkerError) as error:
                    raise refusal(f"Rejected: {error}") from error
                except Exception as error:  # a bug: logged, and nothing was added (the add is the last step)
                    traceback.print_exc()
                    raise refusal(f"Rejected: the upload could not be checked ({type(error).__name__}); nothing was added.") from error
                finally:  # the uploaded copies in Gradio's cache are no longer needed (delete_cache sweeps any left behind)
                    for path in paths if isinstance(paths, list) else []:
                        Path(path).unlink(missing_ok=True)
                ctx.predictor.reload()
                return f"✅ {result.message}"

            upload_button.click(on_upload, inputs=files, outputs=upload_status, api_name="upload", concurrency_limit=1, concurrency_id="upload")

        with gr.Tab("About"):
            gr.Markdown(ABOUT)
        gr.api(ctx.health, api_name="health")
    return demo
