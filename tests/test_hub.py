"""Registries on a Hugging Face Hub API served on loopback (see tests/hub_server.py for what is real and what is a stand-in).

The CLI runs in a subprocess because huggingface_hub reads HF_ENDPOINT when it is imported. No request
leaves 127.0.0.1, and every server started here is stopped when the module's tests finish.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probes_hub.hub.registry import write_index
from probes_hub.paths import PROJECT_ROOT
from probes_hub.probes import Probe

from .hub_server import LoopbackHub, make_git_repo
from .test_registry import _tree_bytes

PROJECT = PROJECT_ROOT
TOKEN = "hf_loopback_secret_token"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with LoopbackHub(tmp_path_factory.mktemp("hub")) as server:
        yield server


def cli(hub: LoopbackHub, tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m probes_hub ...`` against the loopback Hub; the token must never be printed."""
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf-home"), "PROBES_HUB_CACHE": str(tmp_path / "probes-cache"), "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "PROBES_HUB_NO_PROGRESS": "1"}
    result = subprocess.run([sys.executable, "-m", "probes_hub", *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert TOKEN not in result.stdout + result.stderr
    assert result.returncode == 0 or not check, result.stderr[-3000:]
    return result


def test_pull_from_hub_equals_pull_from_local_folder(hub, toy_probes, tmp_path):
    _, _, out = toy_probes
    local = tmp_path / "local-registry"
    local.mkdir()
    for folder in sorted(out.iterdir()):
        (local / folder.name).mkdir()
        for path in folder.rglob("*"):
            if path.is_file():
                (local / folder.name / path.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
                (local / folder.name / path.relative_to(folder)).write_bytes(path.read_bytes())
    write_index(local)
    make_git_repo(hub.repo_path("org/toy-probes"), _tree_bytes(local))  # a Hub repo with the same layout, served by olah

    listed = cli(hub, tmp_path, "list", "--registry", "org/toy-probes", "--label", "solved", "--json")
    assert {e["name"] for e in json.loads(listed.stdout)} == {f"tiny-llama--toy--solved--{t}" for t in ("linear", "length", "tfidf")}
    cli(hub, tmp_path, "pull", "--registry", "org/toy-probes", "--label", "solved", "--out", str(tmp_path / "from-hub"))
    cli(hub, tmp_path, "pull", "--registry", str(local), "--label", "solved", "--out", str(tmp_path / "from-local"))
    from_hub, from_local = _tree_bytes(tmp_path / "from-hub"), _tree_bytes(tmp_path / "from-local")
    assert len(from_hub) == 13 and from_hub == from_local  # 3 probes x (config, weights, card, predictions) + the linear sweep table
    downloaded = [p for p in (tmp_path / "probes-cache").rglob("*") if p.is_file()]
    assert any(p.name == "sweep.csv" for p in downloaded) and not any("difficulty" in str(p) for p in downloaded)  # only the folders asked for


def test_push_then_pull_round_trip_keeps_earlier_probes(hub, toy_probes, tiny, tmp_path):
    data, results, _ = toy_probes
    first, second = results["difficulty"].probes["linear"], results["solved"].probes["linear"]
    cli(hub, tmp_path, "push", str(first.path), "--registry", "org/new-probes", "--message", "first probe")
    cli(hub, tmp_path, "pull", first.path.name, "--registry", "org/new-probes", "--out", str(tmp_path / "pulled"))
    assert _tree_bytes(tmp_path / "pulled" / first.path.name) == _tree_bytes(first.path)

    from probes_hub.data.datasets import load_dataset
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.extract.prompts import prompt_format
    from probes_hub.train import build_features

    dataset = load_dataset(str(data), label_columns=["difficulty", "solved"])
    features = build_features(ModelFeatures(tiny), prompt_format(tiny.tokenizer).mode == "chat", dataset, list(range(tiny.n_layers)),
                              max_length=1024, progress=False)
    test = features.take(dataset.frame["split"].to_numpy() == "test")
    np.testing.assert_array_equal(Probe.from_pretrained(tmp_path / "pulled" / first.path.name).predict(test), first.test_predictions)

    cli(hub, tmp_path, "push", str(second.path), "--registry", "org/new-probes")
    listed = json.loads(cli(hub, tmp_path, "list", "--registry", "org/new-probes", "--json").stdout)
    assert [e["name"] for e in listed] == sorted([first.path.name, second.path.name])
    repo = hub.repo_path("org/new-probes")
    card = (repo / "README.md").read_text()
    assert f"`{first.path.name}`" in card and f"`{second.path.name}`" in card
    log = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True, check=True).stdout.splitlines()
    assert log[1] == "first probe" and len(log) == 3  # one commit per push, after the repo's initial commit


def test_leaderboard_push_to_results_dataset_and_read_back(hub, toy_probes, tmp_path):
    _, _, out = toy_probes
    registry = tmp_path / "registry"
    registry.mkdir()
    for folder in out.iterdir():
        subprocess.run(["cp", "-r", str(folder), str(registry / folder.name)], check=True)
    write_index(registry)
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf-home"), "PROBES_HUB_NO_PROGRESS": "1"}
    run = subprocess.run([sys.executable, "-m", "probes_hub", "leaderboard", "--registry", str(registry), "--out", str(tmp_path / "lb"), "--push", "org/results",
                          "--max-failed", "1"],  # the tiny test model exists only in the test process: its rows fail here; the push is tested
                         cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "RESULT rows=6" in run.stdout and TOKEN not in run.stdout + run.stderr
    assert (hub.repo_path("org/results", "dataset") / "leaderboard.json").exists()
    read = subprocess.run([sys.executable, "-c", "import json; from probes_hub.leaderboard import read_leaderboard; print(json.dumps(read_leaderboard('org/results')))"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr[-2000:]
    assert json.loads(read.stdout) == json.loads((tmp_path / "lb" / "leaderboard.json").read_text())


def test_hand_fitted_probe_saves_loads_and_pushes_to_the_hub(hub, tiny, tmp_path):
    """A probe fitted by hand on Features from a model (no training pipeline) round-trips and pushes like a trained one."""
    from probes_hub.extract.feature_source import ModelFeatures
    from probes_hub.probes import LinearProbe

    rng = np.random.default_rng(0)
    words = "one two three four five six seven eight nine ten apple apples cost total".split()
    questions = [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(60)]
    features, _ = ModelFeatures(tiny).features(questions, list(range(tiny.n_layers)))
    y = np.array([len(q.split()) for q in questions], dtype=float)
    probe = LinearProbe(cv_folds=3).fit(features, y)
    folder = probe.save_pretrained(tmp_path / "hand-fitted")
    loaded = Probe.from_pretrained(folder, hidden_size=tiny.hidden_size)
    np.testing.assert_array_equal(loaded.predict(features), probe.predict(features))
    assert loaded.record_.model.fingerprint == tiny.fingerprint and loaded.record_.data.n_train == 60

    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "0",
           "PROBES_HUB_CACHE": str(tmp_path / "probes-cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    script = f"from probes_hub import Probe; print(Probe.from_pretrained({str(folder)!r}).push_to_hub('org/hand-fitted'))"
    pushed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    name = pushed.stdout.strip().splitlines()[-1]
    cli(hub, tmp_path, "pull", name, "--registry", "org/hand-fitted", "--out", str(tmp_path / "pulled"))
    np.testing.assert_array_equal(Probe.from_pretrained(tmp_path / "pulled" / name).predict(features), probe.predict(features))


def test_data_pull_syncs_a_pinned_hash_checked_data_folder_and_refuses_a_tampered_one(hub, tmp_path):
    """``data push`` publishes a data folder with its SHA256SUMS; ``data pull`` gets it back byte for byte at a pinned commit, and a
    repo whose file no longer matches its sum replaces nothing."""
    data = tmp_path / "data"
    (data / "gsm8k").mkdir(parents=True)
    (data / "gsm8k" / "test.jsonl").write_text('{"question": "What is 7 + 5?", "answer": "#### 12"}\n')
    (data / "README.md").write_text("# data\n")
    cli(hub, tmp_path, "data", "push", "--repo", "org/data", "--data-dir", str(data))
    assert _tree_bytes(data) == {"gsm8k/test.jsonl": (data / "gsm8k" / "test.jsonl").read_bytes(), "README.md": b"# data\n"}  # untouched
    pulled = cli(hub, tmp_path, "data", "pull", "--repo", "org/data", "--out", str(tmp_path / "pulled"))
    assert "every sha256 checked" in pulled.stdout
    got = _tree_bytes(tmp_path / "pulled")
    assert got["gsm8k/test.jsonl"] == (data / "gsm8k" / "test.jsonl").read_bytes() and "SHA256SUMS" in got
    record = json.loads(got[".pulled.json"])
    assert record["repo"] == "org/data" and len(record["revision"]) == 40 and record["revision"] in pulled.stdout

    repo = hub.repo_path("org/data", "dataset")
    (repo / "gsm8k" / "test.jsonl").write_text('{"question": "tampered"}\n')
    subprocess.run(["git", "commit", "-qam", "tamper"], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})
    before = _tree_bytes(tmp_path / "pulled")
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home-2"), "PROBES_HUB_CACHE": str(tmp_path / "probes-cache"),
           "HF_HUB_OFFLINE": "0", "PROBES_HUB_NO_PROGRESS": "1"}
    refused = subprocess.run([sys.executable, "-m", "probes_hub", "data", "pull", "--repo", "org/data", "--out", str(tmp_path / "pulled")],
                             cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "gsm8k/test.jsonl differs from its sha256" in refused.stderr
    assert _tree_bytes(tmp_path / "pulled") == before and not list(tmp_path.glob(".pulled.pulling-*"))


def test_the_data_folder_is_looked_for_in_the_documented_order(tmp_path, monkeypatch):
    from probes_hub.data import datasets

    monkeypatch.setenv("PROBES_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PROBES_HUB_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "DEFAULT_DATA_DIR", tmp_path / "no-shared-data")
    with pytest.raises(FileNotFoundError, match="probes-hub data pull --repo"):
        datasets.resolve_data_dir()
    (tmp_path / "cache" / "data").mkdir(parents=True)
    assert datasets.resolve_data_dir() == (tmp_path / "cache" / "data").resolve()  # the pulled folder, last
    (tmp_path / "no-shared-data").mkdir()
    assert datasets.resolve_data_dir() == (tmp_path / "no-shared-data").resolve()  # ../shared/data before it
    monkeypatch.setenv("PROBES_HUB_DATA_DIR", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    assert datasets.resolve_data_dir() == (tmp_path / "env").resolve() and datasets.resolve_data_dir(tmp_path / "cache") == (tmp_path / "cache").resolve()


def test_a_hub_registry_is_served_from_its_snapshot_while_the_hub_is_away(toy_probes, tmp_path_factory, tmp_path):
    """Read a Hub registry once (the snapshot), stop the Hub: listing and loading go on from the snapshot, marked as such; a moderator
    removal is one commit while it is up; with neither Hub nor snapshot, one clear line."""
    _, _, out = toy_probes
    local = tmp_path / "local"
    shutil.copytree(out, local)
    write_index(local)
    with LoopbackHub(tmp_path_factory.mktemp("outage-hub")) as hub:
        make_git_repo(hub.repo_path("org/outage"), _tree_bytes(local))
        cli(hub, tmp_path, "pull", "tiny-llama--toy--solved--linear", "--registry", "org/outage", "--out", str(tmp_path / "pulled"))
        cli(hub, tmp_path, "registry", "remove", "tiny-llama--toy--solved--tfidf", "--registry", "org/outage", "--reason", "test", "--by", "mod")
        online = cli(hub, tmp_path, "list", "--registry", "org/outage", "--json")
        assert "tiny-llama--toy--solved--tfidf" not in online.stdout and "unreachable" not in online.stderr
    offline = cli(hub, tmp_path, "list", "--registry", "org/outage", "--json")  # the same cache, the Hub stopped
    assert json.loads(offline.stdout) == json.loads(online.stdout)
    assert "registry as of" in offline.stderr and "the Hub is unreachable" in offline.stderr
    cli(hub, tmp_path, "pull", "tiny-llama--toy--solved--linear", "--registry", "org/outage", "--out", str(tmp_path / "pulled-offline"))
    assert _tree_bytes(tmp_path / "pulled-offline") == _tree_bytes(tmp_path / "pulled")
    nothing = cli(hub, tmp_path / "fresh", "list", "--registry", "org/outage", check=False)
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1 and "no local snapshot" in nothing.stderr
