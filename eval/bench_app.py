"""Benchmark the app end to end: launch ``app.py``, send sequential and concurrent predictions through gradio_client.

The naive baseline, measured in the same run and process, is what notebook code does per question: a full
forward pass with ``output_hidden_states=True`` and the LM head, then the probes; the ratio compares it with
the app's predictor in the same process (HTTP latency is reported separately). Ends with
``RESULT p50_ms=... p95_ms=... errors=0 ...``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
QUESTION = ("A bakery sells muffins for $3 each and cookies for $2 each. Maria buys 4 muffins and some cookies and pays $20 in total. "
            "How many cookies did she buy? Explain your reasoning and give the final number.")


def launch(port: int) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PROBES_HUB_CONCURRENCY": "4"}
    started = time.time()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if process.poll() is not None:
            raise RuntimeError("app.py exited during start-up")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return process, time.time() - started
        except OSError:
            time.sleep(0.2)


def in_process_ms(calls: int) -> tuple[float, float]:
    """p50 in this process of (a) the naive path: full forward with all hidden states and logits, then the linear probes,
    and (b) the app's predictor (forward stopped after the deepest probe layer, every probe read)."""
    import torch

    from probes_hub.models import load_model
    from probes_hub.prompts import encode_prompts, prompt_format
    from probes_hub.registry import Registry
    from space_app.predictor import Predictor

    lm = load_model(None)
    fmt = prompt_format(lm.tokenizer)
    registry = Registry()
    probes = registry.load_all(probe_type="linear").probes.values()
    predictor = Predictor(lm, registry)
    naive, fast = [], []
    for _ in range(calls):
        started = time.perf_counter()
        ids, _ = encode_prompts([QUESTION], fmt, lm.tokenizer)
        with torch.inference_mode():
            out = lm.model(torch.tensor(ids), output_hidden_states=True)
        for probe in probes:
            hidden = out.hidden_states[probe.layer + 1][0, probe.position].float().numpy()
            _ = ((hidden - probe.mean_) / probe.scale_) @ probe.coef_
        naive.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        predictor.predict(QUESTION)
        fast.append((time.perf_counter() - started) * 1000)
    return statistics.median(naive), statistics.median(fast)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 sequential + 20 concurrent calls (the default sizes; under 3 minutes on CPU)")
    parser.add_argument("--calls", type=int, default=20, help="calls per phase")
    args = parser.parse_args(argv)
    from gradio_client import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process, cold_s = launch(port)
    errors = 0
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        first = time.perf_counter()
        client.predict(QUESTION, "utility: p - lambda x cost", 0.3, 0.7, api_name="/predict")
        first_ms = (time.perf_counter() - first) * 1000

        def call(_: int) -> float:
            started = time.perf_counter()
            result = client.predict(QUESTION, "utility: p - lambda x cost", 0.3, 0.7, api_name="/predict")
            if not result[-1] or len(result[-1]["success"]) < 10:
                raise RuntimeError("incomplete prediction")
            return (time.perf_counter() - started) * 1000

        sequential = []
        for i in range(args.calls):
            try:
                sequential.append(call(i))
            except Exception:
                errors += 1
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(call, i) for i in range(args.calls)]
            concurrent = []
            for future in futures:
                try:
                    concurrent.append(future.result())
                except Exception:
                    errors += 1
    finally:
        process.terminate()
        process.wait(timeout=20)
    baseline, fast = in_process_ms(args.calls)
    p50, p95 = np.percentile(sequential, 50), np.percentile(sequential, 95)
    c50, c95 = np.percentile(concurrent, 50), np.percentile(concurrent, 95)
    print(f"start to listening {cold_s:.1f} s; first prediction {first_ms:.0f} ms")
    print(f"sequential: p50 {p50:.0f} ms, p95 {p95:.0f} ms; concurrent (4 clients): p50 {c50:.0f} ms, p95 {c95:.0f} ms")
    print(f"in process: naive path (full forward + hidden states + LM head, then probes) p50 {baseline:.0f} ms; "
          f"the app's predictor p50 {fast:.0f} ms")
    print(f"RESULT p50_ms={p50:.0f} p95_ms={p95:.0f} concurrent_p50_ms={c50:.0f} concurrent_p95_ms={c95:.0f} errors={errors} "
          f"naive_p50_ms={baseline:.0f} predictor_p50_ms={fast:.0f} speedup_vs_naive={baseline / fast:.2f} start_s={cold_s:.1f}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
