"""Build the app from environment variables: the model and registry are loaded once and shared by every session.

- ``PROBES_HUB_MODEL``: model spec (default: the embedded SmolLM2-135M-Instruct GGUF)
- ``PROBES_HUB_REGISTRY``: registry folder or Hub repo id (default: the bundled ``registry/``); uploads go there
- ``PROBES_HUB_LEADERBOARD``: leaderboard folder or Hub dataset repo id (default: ``leaderboard/``)
- ``PROBES_HUB_LEADERBOARD_EVERY``: seconds between background leaderboard refreshes (default: off)
- ``PROBES_HUB_POOLS``: routing pools offered, comma-separated bundled names or pool files (default ``math,mmlu-pro-25``)
- ``PROBES_HUB_MODEL_WORKER``: ``1`` (default) loads the model in a supervised worker process while Gradio imports
  (and, on the first upload, a second one that re-evaluates uploads); ``0`` loads it in the app's process
  (always so on a ZeroGPU Space, whose GPU only the main process gets)
- ``PROBES_HUB_QUEUE_SIZE``: requests waiting at most (default 64); beyond it clients are told the app is busy
- ``PROBES_HUB_MAX_BATCH``: concurrent questions answered by one forward pass at most (default 32; 1 turns batching off)

This module imports only the standard library at the top: :func:`create_app` starts the model worker
before Gradio, torch or pandas are imported, so that their imports overlap.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from probes_hub.paths import BUNDLED_LEADERBOARD

from .model_worker import ModelWorker

DEFAULT_POOLS = "math,mmlu-pro-25"

if TYPE_CHECKING:
    import gradio as gr

    from probes_hub.extract.feature_source import FeatureSource
    from probes_hub.routing.evaluate import Pool

    from .ui import AppContext


def app_pools() -> list[Pool]:
    """The routing pools the Predict tab offers: ``PROBES_HUB_POOLS`` (comma-separated names or files), first one preselected."""
    from probes_hub.routing.evaluate import load_pool

    return [load_pool(spec.strip()) for spec in (os.environ.get("PROBES_HUB_POOLS") or DEFAULT_POOLS).split(",") if spec.strip()]


def uses_worker() -> bool:
    """Whether the model runs in supervised worker processes (not on a ZeroGPU Space, which lends its GPU to the main process only)."""
    return os.environ.get("PROBES_HUB_MODEL_WORKER", "1") != "0" and importlib.util.find_spec("spaces") is None


def start_model(model: str | None = None) -> FeatureSource:
    """``model`` (default: the configured one): a worker process starting to load now, or (on a Space, or asked for) a model in this process."""
    model = model or os.environ.get("PROBES_HUB_MODEL") or None
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
    from .scheduler import interval_from_env, start_scheduler
    from .ui import AppContext, build_demo

    registry = Registry(os.environ.get("PROBES_HUB_REGISTRY") or None)
    pools = app_pools()
    max_batch = int(os.environ.get("PROBES_HUB_MAX_BATCH") or 32)

    def make_predictor(source: FeatureSource) -> Predictor:
        predictor = Predictor(source, registry, pools, max_batch=max_batch)
        if importlib.util.find_spec("spaces") is not None:  # on Hugging Face Spaces: run predictions on the Space's GPU
            import spaces

            predictor.batcher.batch_fn = spaces.GPU(predictor.predict_many)
        return predictor

    leaderboard = os.environ.get("PROBES_HUB_LEADERBOARD") or str(BUNDLED_LEADERBOARD)
    model = resolve_model_spec(None)
    models = list(dict.fromkeys([model, *installed_aliases()]))
    ctx = AppContext(make_predictor(source), registry, leaderboard, model=model, models=models,
                     start_source=start_model, make_predictor=make_predictor, separate_evaluation=uses_worker())
    every = interval_from_env()
    if every:
        local = is_local_source(leaderboard)
        ctx.scheduler = start_scheduler(every, leaderboard if local else BUNDLED_LEADERBOARD, registry=registry.spec,
                                        push=None if local else leaderboard, run_now=False)
    return build_demo(ctx), ctx
