"""Heavy jobs on Ray: shards of questions go to actors that each load the model once; the driver assembles the results.

- Extraction: shards are runs of the same packed batches the single-process path forms, so every question is
  computed in the same batch as locally and the result is bit-identical on CPU. Each actor writes its shard to the
  content-addressed activation cache (a restarted job reads it back) and returns it.
- Labelling: shards are runs of the same ``generate`` calls as locally (same questions, same seed per call), so the
  labels are the same. Each shard's completions are written atomically to ``shards/`` under the output folder; a
  restarted job skips the shards already there.
- Faults: actors are restarted by Ray when their process dies and their unfinished calls are retried, so every
  shard comes back exactly once.

Actors: one per GPU when the cluster has GPUs, else one per CPU (``--ray-actors`` overrides).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probes_hub.progress import progress_bar

SHARDS_PER_ACTOR = 4
"""Shards per actor: small enough to spread the work evenly and lose little to a restart."""
MAX_RESTARTS = 3


def require_ray():
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError('--engine ray needs Ray: pip install "probes-hub[scale]" (or pip install -r requirements-scale.txt).') from error
    return ray


@dataclass
class RayOptions:
    """Where the cluster is and how many model actors to start."""

    address: str | None = None
    """``None``: start a local cluster for this job (and shut it down after); else e.g. ``ray://head:10001`` or ``auto``."""
    actors: int | None = None
    num_cpus: int | None = None
    """CPUs of a local cluster this job starts (default: all)."""
    threads: int | None = None
    """Torch threads per CPU actor (default: this process's count; float32 matmuls round by how work is split across threads,
    so the same count keeps results bit-identical to the local path). Each CPU actor reserves one CPU of the cluster."""
    cache_shards: bool = True
    """Actors keep each extracted shard in the activation cache (a restarted job reads it back); off for benchmarks."""


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[object]:
    """Connect to (or start) the cluster; a cluster started here is shut down on exit, also on errors."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=options.address, num_cpus=options.num_cpus if options.address is None else None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _actor_class(ray):
    @ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
    class ModelActor:
        """One model, loaded once, serving shards of extraction or labelling work."""

        def __init__(self, spec: str, fingerprint: str, threads: int):
            import torch

            from probes_hub.extract.models import load_model
            from probes_hub.extract.precision import fingerprint_dtype

            if not torch.cuda.is_available():
                torch.set_num_threads(threads)
            self.lm = load_model(spec, dtype=fingerprint_dtype(fingerprint))  # the driver's precision, on whatever device the actor has
            if self.lm.fingerprint != fingerprint:
                raise ValueError(f"actor loaded {self.lm.fingerprint} for {spec!r}; the driver has {fingerprint}")

        def pid(self) -> int:
            return os.getpid()

        def extract(self, index: int, prompt_ids: list[list[int]], layers: list[int], positions: list[int], prefix: list[int],
                    use_cache: bool = True) -> tuple[int, np.ndarray]:
            return index, cached_shard(self.lm, prompt_ids, layers, positions, prefix, use_cache=use_cache)

        def label(self, index: int, chunks: list[list[dict]], options, answer_column: str, backend: str, path: str) -> tuple[int, list[list[dict]]]:
            return index, label_shard(self.lm, chunks, options, answer_column, backend, Path(path))

    return ModelActor


def start_actors(ray, lm, options: RayOptions) -> list:
    """Model actors for ``lm`` (loaded by its spec in each actor): one per GPU, else CPU actors."""
    if lm.spec is None:
        raise ValueError(f"{lm.display_id} was built in memory; --engine ray needs a model that can be loaded by name or path.")
    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = options.actors or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
    resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    actor = _actor_class(ray).options(**resources)
    threads = options.threads or torch_threads()
    return [actor.remote(lm.spec, lm.fingerprint, threads) for _ in range(count)]


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def consecutive_shards(units: Sequence[list[int]], n_shards: int) -> list[list[list[int]]]:
    """Split consecutive work units (lists of row indices: a packed batch, a ``generate`` call) into at most ``n_shards`` runs of whole units."""
    bounds = np.linspace(0, len(units), min(n_shards, len(units)) + 1).round().astype(int)
    return [list(units[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def rows_of(shard: list[list[int]]) -> list[int]:
    return [row for unit in shard for row in unit]


def run_shards(actors: list, method: str, calls: list[tuple], *, desc: str, sizes: dict[int, int]) -> dict[int, object]:
    """Call ``method(*args)`` for each ``args`` of ``calls`` (its first item the shard index) on the actors as each frees up; ``{shard index: result}``."""
    from ray.util import ActorPool

    pool = ActorPool(actors)
    results: dict[int, object] = {}
    with progress_bar(total=sum(sizes.values()), desc=desc) as bar:
        for index, value in pool.map_unordered(lambda actor, args: getattr(actor, method).remote(*args), calls):
            results[index] = value
            bar.update(sizes[index])
    return results


# -- extraction ------------------------------------------------------------------------------------------
def cached_shard(lm, prompt_ids: list[list[int]], layers: list[int], positions: list[int], prefix: list[int], *, use_cache: bool = True) -> np.ndarray:
    """One shard's activations, through a content-addressed file in the activation cache (model, prompts, layers, positions)."""
    from safetensors.numpy import load_file, save

    from probes_hub.atomic import atomic_write_bytes
    from probes_hub.cache import cache_dir, sha256_text
    from probes_hub.extract.activations import extract

    key = sha256_text(lm.fingerprint, json.dumps(prompt_ids), str(list(layers)), str(list(positions)), str(list(prefix)))[:24]
    path = cache_dir("activations", sha256_text(lm.fingerprint)[:16], "shards") / f"{key}.safetensors"
    if use_cache and path.exists():
        with contextlib.suppress(Exception):  # a torn file is computed again
            return load_file(str(path))["activations"]
    acts = extract(lm, prompt_ids, layers, positions, shared_prefix=prefix, progress=False)
    if use_cache:
        atomic_write_bytes(path, save({"activations": acts}))
    return acts


class RayExtractor:
    """An extractor (see :mod:`probes_hub.extract.engine`) running :func:`~probes_hub.extract.activations.extract` on Ray actors.

    Inside a session opened by the caller (a CLI command) the actors are started once per model and reused by every
    extraction of the command; otherwise each call opens and closes its own session.
    """

    def __init__(self, options: RayOptions):
        self.options = options
        self.actors: dict[str, list] = {}

    def __call__(self, lm, prompt_ids: list[list[int]], layers: list[int], positions: list[int], *, shared_prefix=(), progress: bool = True) -> np.ndarray:
        from probes_hub.extract.activations import PACKED_BATCH_TOKENS, shared_prefix_length
        from probes_hub.extract.packing import pack_groups

        prefix = list(shared_prefix)[: shared_prefix_length(prompt_ids, shared_prefix, positions)]
        groups = pack_groups([len(p) - len(prefix) for p in prompt_ids], PACKED_BATCH_TOKENS)  # the batches the local path forms
        ray = require_ray()
        reuse = ray.is_initialized()
        with ray_session(self.options):
            actors = self.actors.get(lm.fingerprint) if reuse else None
            if actors is None:
                actors = start_actors(ray, lm, self.options)
                if reuse:
                    self.actors[lm.fingerprint] = actors
            shards = consecutive_shards(groups, SHARDS_PER_ACTOR * len(actors))
            calls = [(i, [prompt_ids[r] for r in rows_of(shard)], list(layers), list(positions), prefix, self.options.cache_shards)
                     for i, shard in enumerate(shards)]
            results = run_shards(actors, "extract", calls, desc=f"Extracting on {len(actors)} Ray actors", sizes={i: len(rows_of(s)) for i, s in enumerate(shards)})
        out = np.zeros((len(prompt_ids), len(layers), len(positions), lm.hidden_size), dtype=np.float32)
        for index, shard in enumerate(shards):
            out[rows_of(shard)] = results[index]
        return out


# -- labelling --------------------------------------------------------------------------------------------
def label_shard(lm, chunks: list[list[dict]], options, answer_column: str, backend: str, path: Path) -> list[list[dict]]:
    """Label a shard (``generate`` calls' worth of question rows) and write its completions to ``path`` atomically."""
    import pandas as pd

    from probes_hub.atomic import atomic_write_text
    from probes_hub.data.labeling import completion_records

    records = [r for chunk in chunks for r in completion_records(lm, pd.DataFrame(chunk), options, answer_column=answer_column, backend=backend)]
    atomic_write_text(path, "".join(json.dumps(sample) + "\n" for question in records for sample in question))
    return records


def label_on_ray(lm, dataset, out: str | Path, generation, *, answer_column: str, backend: str, options: RayOptions):
    """:func:`~probes_hub.data.labeling.label_by_generation` on Ray: the same files and labels, resumable by shard."""
    from probes_hub.atomic import atomic_write_text
    from probes_hub.cache import sha256_text
    from probes_hub.data.labeling import questions_per_call, summarize_completions

    out = Path(out)
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    frame = dataset.frame
    step = questions_per_call(generation)
    calls_rows = [list(range(start, min(start + step, len(frame)))) for start in range(0, len(frame), step)]
    with ray_session(options) as ray:
        actors = start_actors(ray, lm, options)
        shards = consecutive_shards(calls_rows, SHARDS_PER_ACTOR * len(actors))
        ids = frame["id"].astype(str).tolist()
        paths = [shard_dir / f"{sha256_text(json.dumps([ids[r] for r in rows_of(shard)]), str(generation), lm.fingerprint)[:16]}.jsonl" for shard in shards]
        todo = [i for i, path in enumerate(paths) if not path.exists()]  # a restarted job skips the shards already written
        columns = ["id", "question", answer_column]
        calls = [(i, [frame.iloc[unit][columns].to_dict("records") for unit in shards[i]], generation, answer_column, backend, str(paths[i])) for i in todo]
        run_shards(actors, "label", calls, desc=f"Labelling on {len(actors)} Ray actors", sizes={i: len(rows_of(shards[i])) for i in todo})
    done: dict[str, list[dict]] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            done.setdefault(record["id"], []).append(record)
    atomic_write_text(out / "completions.jsonl", "".join(json.dumps(r) + "\n" for qid in ids for r in done.get(qid, [])))
    table = summarize_completions(done, ids=ids)
    atomic_write_text(out / "labels.csv", table.to_csv(index=False))
    return table
