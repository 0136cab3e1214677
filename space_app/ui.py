"""The Gradio Blocks app: Predict, Leaderboard, Route a workload, Inside the model, Upload and About tabs over one shared model and registry."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from probes_hub.extract.feature_source import FeatureSource
from probes_hub.extract.models import display_id_for
from probes_hub.hub.registry import Registry
from probes_hub.schema.validation import ProbeValidationError

from .content import ABOUT, EXAMPLES
from .inside_tab import build_inside_tab
from .leaderboard_view import LeaderboardReader, leaderboard_view, source_version
from .model_worker import ModelWorkerError
from .predict_view import ROUTING_RULES, UTILITY, plain, predict_view
from .predictor import Predictor
from .upload import UploadPolicy, accept_upload
from .workload_tab import build_workload_tab

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
    registry_refresher: object | None = None
    model: str = ""
    """The active source model's spec (an alias such as ``smollm2``)."""
    models: list[str] = field(default_factory=list)
    """The source models the Predict tab offers: the configured one and the installed packaged ones."""
    start_source: Callable[[str], FeatureSource] | None = None
    make_predictor: Callable[[FeatureSource], Predictor] | None = None
    separate_evaluation: bool = False
    """Re-evaluate uploads on a second model worker (the evaluation lane) rather than the predictor's own source."""
    leaderboard: LeaderboardReader = field(default_factory=LeaderboardReader)
    upload_policy: UploadPolicy = field(default_factory=UploadPolicy.configured)
    recovered: list[str] = field(default_factory=list)
    """What start-up found after an interrupted change of the registry or leaderboard, and did about it (shown in /health)."""
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

    def refresh_registry(self) -> None:
        """Ask the registry for a newer manifest (a Hub registry: its current commit) and reload the probes when it changed;
        while the Hub is unreachable the last snapshot keeps serving (see :meth:`registry_note`)."""
        before = self.registry.snapshot.revision if self.registry.snapshot else None
        self.registry.manifest(refresh=True)
        if self.registry.snapshot is None or self.registry.snapshot.revision != before:
            self.predictor.reload()

    def registry_note(self) -> str:
        """'' normally; while a Hub registry is served from its snapshot because the Hub is unreachable, the line saying so."""
        return self.registry.snapshot.note() if self.registry.snapshot else ""

    def health(self) -> dict:
        """The model worker's state (or ``in process``), the probes read, the registry entries that could not be used, the
        registry's snapshot state, who may upload, and what start-up recovered."""
        status = getattr(self.predictor.source, "status", None)
        snapshot = self.registry.snapshot
        access = self.upload_policy.access
        return {"model": self.predictor.source.display_id, "source_model": self.model, "models": self.models,
                "worker": status() if status else {"state": "in process"}, "precision": self.predictor.precision(),
                "probes": len(self.predictor.probes or {}), "problems": dict(self.predictor.problems),
                "registry": {"spec": self.registry.spec, "note": self.registry_note(),
                             **({"revision": snapshot.revision, "fetched_at": snapshot.fetched_at, "hub_reachable": not snapshot.unreachable} if snapshot else {})},
                "uploads": "sign-in" if access.on_space else "tokens" if access.tokens else "off", "recovered": list(self.recovered)}


def refusal(message: str) -> gr.Error:
    """The error a callback raises for input it refuses: shown to the user (or raised in API clients), no traceback in the log."""
    return gr.Error(message, print_exception=False)


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
            with gr.Row(equal_height=True):
                headline = gr.Markdown(elem_id="headline", container=True)
                routing = gr.Markdown(elem_id="routing", container=True)
            status = gr.Markdown(elem_id="status")
            with gr.Accordion("Details: every reading with its test metric, layer by layer, and per model", open=False, elem_id="details"):
                with gr.Row():
                    with gr.Column():
                        difficulty = gr.Markdown(elem_id="difficulty")
                        layers_plot = gr.Plot(label="Layer-wise reading", elem_id="layers-plot")
                    with gr.Column():
                        success_plot = gr.Plot(label="Success", elem_id="success-plot")
                raw = gr.JSON(label="Raw output (JSON)", elem_id="raw")

            def on_predict(text: str, pool_name: str, mode_value: str, lam_value: float, target_value: float):
                try:
                    view = predict_view(ctx.predictor, text, pool_name, mode_value, lam_value, target_value)
                except (ValueError, ModelWorkerError) as error:
                    raise refusal(str(error)) from error
                except Exception as error:  # a bug: logged with its traceback, reported to the user in one line
                    traceback.print_exc()
                    raise refusal(f"The prediction failed ({type(error).__name__}); please retry. If it persists, report it.") from error
                note = ctx.registry_note()
                status_text = f"{view.status}  \n⚠️ {note}" if note else view.status
                return status_text, view.headline, view.difficulty, view.routing, view.layers_chart, view.success_chart, view.payload

            predict_event = dict(fn=on_predict, inputs=[question, pool, mode, lam, target],
                                 outputs=[status, headline, difficulty, routing, layers_plot, success_plot, raw],
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
                view = leaderboard_view(ctx.leaderboard, ctx.leaderboard_source, ctx.registry, ctx.predictor.problems, search=search_value,
                                        model=model_value, dataset=dataset_value, label=label_value, probe_type=type_value)
                return (view.refreshed, view.matrix_chart, view.task_ci_chart, view.scaling_chart, view.table, view.chart,
                        *(gr.Dropdown(choices=choices) for choices in view.choices), view.version)

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

        build_workload_tab(ctx, refusal)
        build_inside_tab(ctx, refusal)

        with gr.Tab("Upload"):
            access = ctx.upload_policy.access
            quota = ctx.upload_policy.quota
            who = ("Sign in with Hugging Face first; uploads are logged under your user name." if access.on_space else
                   "Give the upload token the operator issued you." if access.tokens else "Uploads are **off** on this server (see the message an upload gets).")
            gr.Markdown("Upload a probe folder as a **.zip**, or its files (config.json, model.safetensors). It must be trained on a built-in "
                        "dataset for this app's model. It is checked completely first (files, schema, values, weights' dtype and shape against the "
                        "model), then re-evaluated here on a fixed sample of its dataset's test split; only the re-evaluated metrics are stored. "
                        "An upload never replaces a probe: when its name is taken it is added as the next version (`-v2`, `-v3`, ...). "
                        f"Probes go to `{plain(ctx.registry.spec)}`. {who} Each user may add {quota.per_day} probes per UTC day and "
                        f"{quota.stored_bytes / 1e6:.0f} MB in all; every attempt is recorded in the registry's audit log.")
            if access.on_space:
                gr.LoginButton()
            token = gr.Textbox(label="Upload token (not needed when signed in on a Space)", type="password", elem_id="upload-token",
                               visible=bool(access.tokens))
            files = gr.File(file_count="multiple", label="Probe files or zip", elem_id="upload-files")
            upload_button = gr.Button("Validate and add", elem_id="upload-button")
            upload_status = gr.Markdown(elem_id="upload-status")

            def on_upload(paths, token_value: str | None, profile: gr.OAuthProfile | None = None):
                try:
                    paths = [p if isinstance(p, str) else p.name for p in (paths or [])]
                    result = accept_upload(paths, ctx.registry, ctx.predictor.source, ctx.evaluation_source(), policy=ctx.upload_policy,
                                           signed_in=profile.username if profile else None, token=token_value)
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

            upload_button.click(on_upload, inputs=[files, token], outputs=upload_status, api_name="upload", concurrency_limit=1, concurrency_id="upload")

        with gr.Tab("About"):
            gr.Markdown(ABOUT)
        gr.api(ctx.health, api_name="health")
    return demo
