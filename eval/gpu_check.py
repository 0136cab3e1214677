"""The GPU path, checked against the CPU one: the same extraction on each device, the largest difference of activations and of
every bundled probe's reading, throughput on each device, and (with vLLM installed) labels by vLLM against transformers.

    python -m eval.gpu_check [--quick | --smoke] [--registry DIR] [--data-dir DIR]

Models: a tiny random Llama built in memory (always), then each installed source model (``smollm2``, ``gemma3-270m``). Both
devices run float32, so the differences are the kernels', not the precision's. Without a CUDA device it says so, runs the CPU
part and exits 0 (CI runs it that way). Ends with ``RESULT devices=... models=... max_act_rel_diff=... max_reading_diff=...``.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import torch

from eval import add_size_options, sized
from probes_hub.apply import read_probes
from probes_hub.data.datasets import load_dataset
from probes_hub.extract.activations import extract
from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.models import LoadedModel, load_model
from probes_hub.extract.packaged import installed_aliases
from probes_hub.extract.prompts import encode_prompts
from probes_hub.hub.registry import Registry


def tiny_random_model(device: str, template: LoadedModel) -> LoadedModel:
    """A 2-block random Llama with ``template``'s tokenizer (seeded, so CPU and CUDA get the same weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(template.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=2048)
    model = LlamaForCausalLM(config).eval().to(device)
    return LoadedModel(model, template.tokenizer, "tiny-random:float32", "tiny-random-llama", torch.device(device), torch.float32,
                       chat=template.chat)


def timed_extract(lm: LoadedModel, questions: list[str]) -> tuple[np.ndarray, float]:
    """Every layer's activations at the EOI positions, and the questions per second."""
    fmt = lm.prompt_format()
    prompt_ids, _ = encode_prompts(questions, fmt, lm.tokenizer)
    extract(lm, prompt_ids[:2], [0], fmt.eoi_positions, progress=False)  # warm-up (CUDA kernels, caches)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    acts = extract(lm, prompt_ids, list(range(lm.n_layers)), fmt.eoi_positions, shared_prefix=fmt.prefix_ids, progress=False)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    return acts, len(questions) / (time.perf_counter() - started)


def reading_difference(registry: Registry, models: dict[str, LoadedModel], questions: list[str]) -> tuple[float, int]:
    """The largest difference of any bundled probe's reading of this model between the devices, and how many probes were read."""
    cpu = models["cpu"]
    names = [e.name for e in registry.list(model=cpu.display_id) if e.fingerprint]
    if not names or len(models) < 2:
        return float("nan"), len(names)
    probes = registry.load_all(names=names).probes
    readings = {device: read_probes(ModelFeatures(lm), probes, questions) for device, lm in models.items()}
    worst = max(float(np.nanmax(np.abs(readings["cpu"][n].prediction - readings["cuda"][n].prediction))) for n in probes)
    return worst, len(probes)


def vllm_agreement(alias: str, questions: list[str], answers: list[str]) -> str:
    """Greedy labels of a few GSM8K questions by vLLM and by transformers: how many answers agree (needs vLLM and a GPU)."""
    import pandas as pd

    from probes_hub.data.labeling import GenerationOptions, completion_records

    lm = load_model(alias, device="cuda")
    chunk = pd.DataFrame({"id": [str(i) for i in range(len(questions))], "question": questions, "final_answer": answers})
    options = GenerationOptions(k=1, temperature=0.0, max_new_tokens=256, batch_size=len(questions))
    by = {backend: completion_records(lm, chunk, options, answer_column="final_answer", backend=backend) for backend in ("transformers", "vllm")}
    same = sum(a[0]["answer"] == b[0]["answer"] for a, b in zip(by["transformers"], by["vllm"]))
    return f"{same}/{len(questions)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.gpu_check", description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick="32 MATH-500 questions per model", smoke="4 questions per model")
    parser.add_argument("--registry", default=None, help="registry whose probes are read on both devices (default: the bundled one)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    n = sized(args, full=128, quick=32, smoke=4)
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    if len(devices) == 1:
        print("no CUDA device here: running the CPU part only (the comparison needs a GPU machine)")
    else:
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
    questions = load_dataset("math500", data_dir=args.data_dir).frame["question"].tolist()[:n]
    registry = Registry(args.registry)
    act_diffs, reading_diffs, summary = [], [], []
    aliases = installed_aliases()
    for name in ["tiny-random", *aliases]:
        models = {}
        for device in devices:
            if name == "tiny-random":
                models[device] = tiny_random_model(device, models.get("cpu") or load_model(aliases[0] if aliases else None))
            else:
                models[device] = load_model(name, device=device, dtype="float32")
        outputs = {device: timed_extract(lm, questions) for device, lm in models.items()}
        line = f"{name}: " + ", ".join(f"{device} {qps:.1f} questions/s" for device, (_, qps) in outputs.items())
        if "cuda" in outputs:
            cpu, gpu = outputs["cpu"][0], outputs["cuda"][0]
            rel = float(np.abs(cpu - gpu).max() / np.abs(cpu).max())
            act_diffs.append(rel)
            line += f"; activations max |cpu - cuda| {float(np.abs(cpu - gpu).max()):.2e} (relative {rel:.2e})"
        if name != "tiny-random":
            worst, count = reading_difference(registry, models, questions)
            if np.isfinite(worst):
                reading_diffs.append(worst)
                line += f"; {count} bundled probes' readings differ by at most {worst:.2e}"
        print(line)
        summary.append(name)
    vllm = "not installed" if importlib.util.find_spec("vllm") is None else "needs a GPU"
    if importlib.util.find_spec("vllm") is not None and "cuda" in devices and aliases:
        gsm8k = load_dataset("gsm8k", data_dir=args.data_dir).frame.head(4)
        vllm = vllm_agreement(aliases[0], gsm8k["question"].tolist(), gsm8k["final_answer"].astype(str).tolist())
        print(f"vLLM vs transformers, greedy answers that agree: {vllm}")
    print(f"RESULT devices={','.join(devices)} models={','.join(summary)} "
          f"max_act_rel_diff={max(act_diffs) if act_diffs else float('nan'):.3g} "
          f"max_reading_diff={max(reading_diffs) if reading_diffs else float('nan'):.3g} vllm_agreement={vllm.replace(' ', '_')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
