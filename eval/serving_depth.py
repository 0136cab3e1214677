"""Benchmark: what the app's forward pass costs per question at the depth its chosen probes need, against every layer.

The registry's difficulty probes search every layer of the source model, but serving stops the forward pass at the deepest
layer the probes the app reads were chosen at (:func:`probes_hub.apply.extraction_layers`; the layer-wise chart shows the
layers above it only). This script loads the probes the app would read for the default model, reports the layers each was
chosen at and the deepest, and times the extraction for the same questions stopped there and run through every layer (the
cost if serving followed the search instead of the choice). The fastest of ``--repeats`` runs counts on each side.

    python -m eval.serving_depth [--quick] [--registry DIR] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import time

from eval import add_size_options, sized
from probes_hub.apply import choose_probes, extraction_layers, probe_inputs
from probes_hub.data.datasets import load_dataset
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.models import load_model
from probes_hub.hub.registry import Registry


def fastest_seconds(repeats: int, run) -> float:
    """The fastest wall time of ``run()`` over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.serving_depth", description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick="32 questions, 2 repeats", smoke="4 questions, 1 repeat")
    parser.add_argument("--registry", default=None, help="registry folder (default: the bundled one)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    questions = load_dataset("math500", data_dir=args.data_dir).frame["question"].tolist()[: sized(args, full=128, quick=32, smoke=4)]
    repeats = sized(args, full=3, quick=2, smoke=1)
    source = ModelFeatures(load_model())
    registry = Registry(args.registry)
    names = choose_probes(registry.list(), source)
    probes = {name: probe for name, probe in registry.load_all(names=names).probes.items() if probe.fingerprint == source.fingerprint}
    if not probes:
        parser.error(f"the registry has no probe on {source.display_id}; build one with: probes-hub build-registry")
    chosen = sorted({layer for probe in probes.values() for layer in probe.layers_needed()})
    searched = sorted({layer for probe in probes.values() for layer in probe.selection_.layers_searched})
    served = extraction_layers(probes.values(), layerwise=True)
    print(f"{source.display_id}: {len(probes)} probes read by the app; chosen layers {chosen} (searched {searched[0]}-{searched[-1]}); "
          f"the app extracts layers {served[0]}-{served[-1]} of {source.n_layers}")
    source.features(questions[:2], served)  # warm-up: the template prefix's keys and values
    at_choice = fastest_seconds(repeats, lambda: probe_inputs(source, probes, questions, layerwise=True))
    every_layer = fastest_seconds(repeats, lambda: source.features(questions, list(range(source.n_layers))))
    per_question = 1000 * at_choice / len(questions)
    print(f"{len(questions)} MATH-500 questions: {per_question:.1f} ms per question stopped at layer {served[-1]}, "
          f"{1000 * every_layer / len(questions):.1f} ms through all {source.n_layers} layers ({every_layer / at_choice:.2f}x)")
    print(f"RESULT questions={len(questions)} deepest_layer={served[-1]} n_layers={source.n_layers} ms_per_question={per_question:.2f} "
          f"every_layer_ms_per_question={1000 * every_layer / len(questions):.2f} every_layer_ratio={every_layer / at_choice:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
