"""Build the app from its settings (``probes_hub/config.py``, ``docs/configuration.md``): the model and registry are
loaded once and shared by every session.

This module imports only the standard library and the settings at the top: :func:`create_app` starts the model worker
before Gradio, torch or pandas are imported, so that their imports overlap.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from probes_hub.config import setting
from probes_hub.paths import BUNDLED_LEADERBOARD

from .model_worker import ModelWorker

if TYPE_CHECKING:
    import gradio as gr

    from probes_hub.extract.feature_source import FeatureSource
    from probes_hub.routing.evaluate import Pool

    from .ui import AppContext


def app_pools() -> list[Pool]:
    """The routing pools the Predict tab offers: ``PROBES_HUB_POOLS`` (comma-separated names or files), first one preselected."""
    from probes_hub.routing.evaluate import load_pool

    return [load_pool(spec.strip()) for spec in setting("PROBES_HUB_POOLS").split(",") if spec.strip()]


def uses_worker() -> bool:
    """Whether the model runs in supervised worker processes (not on a ZeroGPU Space, which lends its GPU to the main process only)."""
    return setting("PROBES_HUB_MODEL_WORKER") and importlib.util.find_spec("spaces") is None


def start_model(model: str | None = None) -> FeatureSource:
    """``model`` (default: the configured one): a worker process starting to load now, or (on a Space, or asked for) a model in this process."""
    model = model or setting("PROBES_HUB_MODEL")
    if uses_worker():
        return ModelWorker(model)
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model

    return ModelFeatures(load_model(model))


def create_app() -> tuple[gr.Blocks, AppContext]:
    """The Blocks app and its shared context, configured from the environment."""
    source = start_model()
    from probes_hub.extract.models import resolve_model_spec
    from probes_hub.extract.packaged import installed_aliases
    from probes_hub.hub.registry import Registry
    from probes_hub.leaderboard import is_local_source

    from .predictor import Predictor
    from .scheduler import start_scheduler
    from .ui import AppContext, build_demo

    registry = Registry(setting("PROBES_HUB_REGISTRY"))
    pools = app_pools()
    max_batch = setting("PROBES_HUB_MAX_BATCH")

    def make_predictor(source: FeatureSource) -> Predictor:
        predictor = Predictor(source, registry, pools, max_batch=max_batch)
        if importlib.util.find_spec("spaces") is not None:  # on Hugging Face Spaces: run predictions on the Space's GPU
            import spaces

            predictor.batcher.batch_fn = spaces.GPU(predictor.predict_many)
        return predictor

    leaderboard = setting("PROBES_HUB_LEADERBOARD") or str(BUNDLED_LEADERBOARD)
    model = resolve_model_spec(None)
    models = list(dict.fromkeys([model, *installed_aliases()]))
    ctx = AppContext(make_predictor(source), registry, leaderboard, model=model, models=models,
                     start_source=start_model, make_predictor=make_predictor, separate_evaluation=uses_worker())
    every = setting("PROBES_HUB_LEADERBOARD_EVERY")
    if every:
        local = is_local_source(leaderboard)
        ctx.scheduler = start_scheduler(every, leaderboard if local else BUNDLED_LEADERBOARD, registry=registry.spec,
                                        push=None if local else leaderboard, run_now=False)
    return build_demo(ctx), ctx


MAX_FILE_SIZE = "32mb"
"""Largest file the server accepts at all (probe uploads have their own, smaller limits per file)."""


def launch(demo: gr.Blocks) -> None:
    """Queue and serve ``demo`` with the configured address, port and limits."""
    demo.queue(default_concurrency_limit=setting("PROBES_HUB_CONCURRENCY"), max_size=setting("PROBES_HUB_QUEUE_SIZE")).launch(
        server_name=setting("GRADIO_SERVER_NAME"), server_port=setting("GRADIO_SERVER_PORT"), max_file_size=MAX_FILE_SIZE)
