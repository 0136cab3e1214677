"""Benchmark: this extractor vs a naive public-code-style loop on the same MATH-500 prompts.

Naive: batch size 1, full forward with ``output_hidden_states=True`` (LM head included), then slicing.
Fast: :func:`probes_hub.extract.activations.extract` as the pipeline calls it (hooks, early exit, no LM head, the
template prefix's keys/values computed once; prompts packed into unpadded rows on CPU, length-bucketed
padded batches on GPU).
Each path runs ``--repeats`` times and its fastest run counts (as ``timeit`` does), so a noisy machine
moves both sides alike.
Two scenarios: the training sweep (every layer) and a deployed probe (one layer, ``--probe-layer``).
Prints prompts/s, ratios, max abs / relative differences and achieved GFLOP/s next to a measured matmul peak.
Then the same extraction in bfloat16 (the weights loaded in bfloat16, as ``--dtype bfloat16`` does), against float32 in the
same run and against the bfloat16 matmul peak measured at the same shapes, with the largest relative change of a layer's
activations (the norm of the difference over the float32 norm).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from eval import add_size_options, sized
from probes_hub.data.datasets import load_dataset
from probes_hub.extract.activations import extract
from probes_hub.extract.models import load_model
from probes_hub.extract.prompts import encode_prompts


def matmul_peak_gflops(seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> float:
    """Matmul throughput in ``dtype`` at model-like shapes (the practical peak of this machine)."""
    a, b = torch.randn(2048, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * 2048 * 576 * 1536 * count / (time.perf_counter() - started) / 1e9


def naive_extract(lm, prompt_ids, layers, positions) -> np.ndarray:
    """The public-code pattern: one prompt at a time, every hidden state and the logits computed."""
    rows = []
    with torch.no_grad():
        for ids in prompt_ids:
            output = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
            rows.append(np.stack([output.hidden_states[layer + 1][0, positions].float().numpy() for layer in layers]))
    return np.stack(rows)


def extract_fresh(lm, prompt_ids, layers, positions, prefix) -> np.ndarray:
    """The pipeline's extraction, with the prefix keys/values recomputed (as on a fresh start)."""
    lm.prefix_states.clear()
    return extract(lm, prompt_ids, layers, positions, shared_prefix=prefix, progress=False)


def fastest(repeats: int, run) -> tuple[np.ndarray, float]:
    """The result of ``run()`` and its fastest wall time over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return result, best


def layer_params(lm, deepest: int) -> int:
    return sum(p.numel() for layer in lm.decoder_layers[: deepest + 1] for p in layer.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_options(parser, quick="48 prompts, 2 repeats (under 3 minutes on CPU)", smoke="8 prompts, 1 repeat")
    parser.add_argument("-n", type=int, default=100, help="number of MATH-500 prompts (default 100)")
    parser.add_argument("--probe-layer", type=int, default=14, help="layer of the deployed-probe scenario (default 14)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path; the fastest counts (default 3)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    n, repeats = sized(args, full=(args.n, args.repeats), quick=(48, 2), smoke=(8, 1))

    lm = load_model("smollm2")
    fmt = lm.prompt_format()
    questions = load_dataset("math500", data_dir=args.data_dir).frame["question"].tolist()[:n]
    prompt_ids, _ = encode_prompts(questions, fmt, lm.tokenizer)
    tokens = sum(len(p) for p in prompt_ids)
    computed_tokens = tokens - (n - 1) * len(fmt.prefix_ids)
    positions = fmt.eoi_positions
    comparable = list(range(lm.n_layers - 1))  # the last hidden_states entry has the final norm applied
    head_params = lm.model.lm_head.weight.numel()
    print(f"{n} prompts, {tokens} tokens ({len(fmt.prefix_ids)} of each are the shared template prefix), "
          f"torch threads={torch.get_num_threads()}, device={lm.device}, fastest of {repeats} runs")

    extract(lm, prompt_ids[:2], [0], positions, progress=False)  # warm-up
    naive, naive_s = fastest(repeats, lambda: naive_extract(lm, prompt_ids, list(range(lm.n_layers)), positions))
    naive_gflops = 2 * (layer_params(lm, lm.n_layers - 1) + head_params) * tokens / naive_s / 1e9
    print(f"naive      {n / naive_s:7.2f} prompts/s  ({naive_s:.1f} s, {naive_gflops:.0f} GFLOP/s)")

    results = {}
    for name, layers in (("all_layers", list(range(lm.n_layers))), ("probe_layer", [args.probe_layer])):
        fast, seconds = fastest(repeats, lambda layers=layers: extract_fresh(lm, prompt_ids, layers, positions, fmt.prefix_ids))
        pick = [i for i, layer in enumerate(layers) if layer in comparable]
        reference = naive[:, [layers[i] for i in pick]]
        diff = float(np.abs(fast[:, pick] - reference).max())
        rel = diff / float(np.abs(reference).max())
        gflops = 2 * layer_params(lm, max(layers)) * computed_tokens / seconds / 1e9  # the prefix is computed once, not per prompt
        results[name] = (naive_s / seconds, diff, rel, gflops)
        print(f"fast/{name:11s} {n / seconds:7.2f} prompts/s  ({seconds:.1f} s, {gflops:.0f} GFLOP/s)  speedup {naive_s / seconds:.2f}x  "
              f"max_abs_diff {diff:.2e}  max_rel_diff {rel:.2e}")
    peak = matmul_peak_gflops()
    print(f"matmul peak {peak:.0f} GFLOP/s")

    every = list(range(lm.n_layers))
    full, full_s = fastest(repeats, lambda: extract_fresh(lm, prompt_ids, every, positions, fmt.prefix_ids))
    half_lm = lm.in_dtype("bfloat16")
    extract(half_lm, prompt_ids[:2], [0], positions, progress=False)  # warm-up
    half, half_s = fastest(repeats, lambda: extract_fresh(half_lm, prompt_ids, every, positions, fmt.prefix_ids))
    half_gflops = 2 * layer_params(lm, lm.n_layers - 1) * computed_tokens / half_s / 1e9
    half_peak = matmul_peak_gflops(dtype=torch.bfloat16)
    moved = np.linalg.norm((half - full).transpose(1, 0, 2, 3).reshape(lm.n_layers, -1), axis=1) / \
        np.linalg.norm(full.transpose(1, 0, 2, 3).reshape(lm.n_layers, -1), axis=1)
    print(f"bfloat16   {n / half_s:7.2f} prompts/s  ({half_s:.1f} s, {half_gflops:.0f} GFLOP/s, {half_gflops / half_peak:.0%} of its matmul peak "
          f"{half_peak:.0f} GFLOP/s)  {full_s / half_s:.2f}x float32 in this run ({full_s:.1f} s); largest relative change of a layer "
          f"{moved.max():.2%} (layer {int(moved.argmax())}), median {np.median(moved):.2%}")
    all_layers, probe_layer = results["all_layers"], results["probe_layer"]
    print(f"RESULT extract_speedup={probe_layer[0]:.2f} extract_speedup_all_layers={all_layers[0]:.2f} "
          f"max_abs_diff={max(all_layers[1], probe_layer[1]):.2e} max_rel_diff={max(all_layers[2], probe_layer[2]):.2e} "
          f"gflops={all_layers[3]:.0f} naive_gflops={naive_gflops:.0f} peak_gflops={peak:.0f} bf16_speedup_vs_fp32={full_s / half_s:.2f} "
          f"bf16_gflops={half_gflops:.0f} bf16_peak_gflops={half_peak:.0f} bf16_peak_fraction={half_gflops / half_peak:.2f} bf16_max_rel_diff={moved.max():.4f}")


if __name__ == "__main__":
    main()
