"""Benchmark: activation extraction in this process vs on Ray (2 CPU actors, one model each) on the same MATH-500 prompts.

Both extract the same layers at the EOI positions of the embedded model. Ray's side is timed after its cluster and
actors are up (their start-up, mostly loading the model once per actor, is printed apart) and with the shard cache
off, so both sides compute everything. ``identical=1`` when the arrays are bit-identical. On a 2-core machine two
one-thread actors share the same cores the local path uses with two threads, so the ratio shows the overhead, not a
speed-up; on a cluster the actors add machines.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eval import add_size_options, sized
from probes_hub.data.datasets import load_dataset
from probes_hub.extract.activations import extract
from probes_hub.extract.models import load_model
from probes_hub.extract.prompts import encode_prompts
from probes_hub.scale.ray_engine import RayExtractor, RayOptions, ray_session, start_actors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_options(parser, quick="64 questions, layers 0-7 (under 3 minutes on CPU)", smoke="8 questions, layers 0-1")
    parser.add_argument("--questions", type=int, default=500, help="MATH-500 questions (default 500)")
    parser.add_argument("--layers", type=int, default=18, help="layers 0..N-1 (default 18)")
    parser.add_argument("--actors", type=int, default=2, help="Ray CPU actors (default 2)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    n, depth = sized(args, full=(args.questions, args.layers), quick=(64, 8), smoke=(8, 2))

    lm = load_model("smollm2")
    fmt = lm.prompt_format()
    questions = load_dataset("math500", data_dir=args.data_dir).frame["question"].tolist()[:n]
    prompt_ids, _ = encode_prompts(questions, fmt, lm.tokenizer)
    layers, positions = list(range(depth)), fmt.eoi_positions

    started = time.perf_counter()
    local = extract(lm, prompt_ids, layers, positions, shared_prefix=fmt.prefix_ids, progress=False)
    local_seconds = time.perf_counter() - started

    options = RayOptions(actors=args.actors, num_cpus=args.actors, cache_shards=False)
    with ray_session(options) as ray:
        started = time.perf_counter()
        extractor = RayExtractor(options)
        extractor.actors[lm.fingerprint] = actors = start_actors(ray, lm, options)
        ray.get([actor.pid.remote() for actor in actors])  # every actor has loaded the model
        startup_seconds = time.perf_counter() - started
        started = time.perf_counter()
        on_ray = extractor(lm, prompt_ids, layers, positions, shared_prefix=fmt.prefix_ids, progress=False)
        ray_seconds = time.perf_counter() - started

    identical = int(np.array_equal(local, on_ray))
    print(f"{n} MATH-500 prompts x {depth} layers x {len(positions)} EOI positions, SmolLM2-135M, float32 CPU")
    print(f"local (1 process):      {local_seconds:7.1f} s  {n / local_seconds:6.1f} prompts/s")
    print(f"Ray ({args.actors} CPU actors):   {ray_seconds:7.1f} s  {n / ray_seconds:6.1f} prompts/s  (+ {startup_seconds:.1f} s to start the actors)")
    print(f"max abs difference: {float(np.abs(local - on_ray).max()):.3g}")
    print(f"RESULT ray_over_local={local_seconds / ray_seconds:.3f} identical={identical} local_qps={n / local_seconds:.2f} "
          f"ray_qps={n / ray_seconds:.2f} ray_startup_seconds={startup_seconds:.1f} questions={n} actors={args.actors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
