"""Jobs on Ray (the ``scale`` extra): a local cluster started by the tests, the tiny model saved to a folder so that actors can load it."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from probes_hub.data.datasets import QuestionSet  # noqa: E402
from probes_hub.data.labeling import GenerationOptions, label_by_generation  # noqa: E402
from probes_hub.extract.activations import cached_extract, extract  # noqa: E402
from probes_hub.extract.engine import extraction_engine  # noqa: E402
from probes_hub.extract.models import load_model  # noqa: E402
from probes_hub.extract.prompts import encode_prompts, prompt_format  # noqa: E402
from probes_hub.scale.ray_engine import RayExtractor, RayOptions, label_on_ray, ray_session, start_actors  # noqa: E402

from .conftest import WORDS, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory):
    """The tiny random Llama saved as a model folder and loaded from it (actors load the same folder)."""
    lm = tiny_model()
    folder = tmp_path_factory.mktemp("tiny-llama")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return load_model(str(folder))


def questions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 40)))) for _ in range(n)]


def toy_dataset(n: int) -> QuestionSet:
    frame = pd.DataFrame({"id": [f"q{i}" for i in range(n)], "question": questions(n, seed=1), "answer": [str(i % 7) for i in range(n)],
                          "split": "test"})
    return QuestionSet("toy", frame, {}, "all test")


def test_a_job_starts_and_shuts_down_its_own_cluster(folder_model):
    assert not ray.is_initialized()
    fmt = prompt_format(folder_model.tokenizer)
    prompt_ids, _ = encode_prompts(questions(8), fmt, folder_model.tokenizer)
    acts = RayExtractor(RayOptions(num_cpus=2, actors=2))(folder_model, prompt_ids, [1, 3], fmt.eoi_positions, shared_prefix=fmt.prefix_ids)
    assert acts.shape == (8, 2, len(fmt.eoi_positions), folder_model.hidden_size)
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_extraction_on_ray_is_bit_identical_to_the_local_path(folder_model, cluster):
    fmt = prompt_format(folder_model.tokenizer)
    texts = questions(64)
    prompt_ids, _ = encode_prompts(texts, fmt, folder_model.tokenizer)
    layers, positions = [0, 2, 3], fmt.eoi_positions
    local = extract(folder_model, prompt_ids, layers, positions, shared_prefix=fmt.prefix_ids, progress=False)
    on_ray = RayExtractor(RayOptions(actors=2))(folder_model, prompt_ids, layers, positions, shared_prefix=fmt.prefix_ids, progress=False)
    assert on_ray.dtype == local.dtype == np.float32
    assert np.array_equal(on_ray, local)
    with extraction_engine(RayExtractor(RayOptions(actors=2))):  # the cached path every command uses, engine swapped underneath
        cached = cached_extract(folder_model, fmt, texts, layers, positions, data_hash="ray-test", progress=False)
    assert np.array_equal(cached, local)
    again = cached_extract(folder_model, fmt, texts, layers, positions, data_hash="ray-test", progress=False)  # a pure cache read, local engine
    assert np.array_equal(again, local)


def test_labelling_on_ray_gives_the_local_labels(folder_model, cluster, tmp_path):
    dataset = toy_dataset(16)
    options = GenerationOptions(k=2, temperature=0.7, max_new_tokens=8, batch_size=4, seed=3)
    local = label_by_generation(folder_model, dataset, tmp_path / "local", options, answer_column="answer", progress=False)
    on_ray = label_on_ray(folder_model, dataset, tmp_path / "ray", options, answer_column="answer", backend="transformers", options=RayOptions(actors=2))
    pd.testing.assert_frame_equal(on_ray.reset_index(drop=True), local.reset_index(drop=True))
    assert (tmp_path / "ray" / "completions.jsonl").read_text() == (tmp_path / "local" / "completions.jsonl").read_text()
    shard_files = sorted((tmp_path / "ray" / "shards").iterdir())
    assert len(shard_files) >= 2
    shard_files[0].unlink()  # a restarted job redoes only the missing shard
    mtimes = {p: p.stat().st_mtime_ns for p in shard_files[1:]}
    resumed = label_on_ray(folder_model, dataset, tmp_path / "ray", options, answer_column="answer", backend="transformers", options=RayOptions(actors=2))
    pd.testing.assert_frame_equal(resumed, on_ray)
    assert shard_files[0].exists() and all(p.stat().st_mtime_ns == t for p, t in mtimes.items())


def test_a_killed_actor_is_restarted_and_every_question_comes_back_once(folder_model, cluster, tmp_path):
    dataset = toy_dataset(48)
    options = GenerationOptions(k=2, temperature=0.7, max_new_tokens=48, batch_size=4, seed=5)
    local = label_by_generation(folder_model, dataset, tmp_path / "local", options, answer_column="answer", progress=False)
    ray_options = RayOptions(actors=2)
    actors = start_actors(cluster, folder_model, ray_options)
    pids = [cluster.get(a.pid.remote()) for a in actors]
    out = tmp_path / "ray"
    killed = []

    def kill_one_mid_job():
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "shards").exists() or not any((out / "shards").iterdir()):
            time.sleep(0.02)  # wait until the job is under way: a first shard written
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    from probes_hub.scale import ray_engine

    original = ray_engine.start_actors
    ray_engine.start_actors = lambda *args, **kwargs: actors  # the job uses the actors whose pids we know (the real ones, not stand-ins)
    try:
        killer = threading.Thread(target=kill_one_mid_job)
        killer.start()
        table = label_on_ray(folder_model, dataset, out, options, answer_column="answer", backend="transformers", options=ray_options)
        killer.join()
    finally:
        ray_engine.start_actors = original
    assert killed and cluster.get(actors[0].pid.remote()) != pids[0]  # Ray restarted the killed actor in a new process
    assert table["id"].tolist() == dataset.frame["id"].tolist()  # every question exactly once, in order
    pd.testing.assert_frame_equal(table.reset_index(drop=True), local.reset_index(drop=True))


def test_ray_session_reuses_a_running_cluster(cluster):
    with ray_session(RayOptions()) as session:
        assert session.is_initialized()
    assert ray.is_initialized()  # not ours to shut down


def test_cli_extract_with_engine_ray_fills_the_same_cache_as_the_local_path(folder_model, cluster, tmp_path, capsys):
    from probes_hub.cli import main
    from probes_hub.data.datasets import load_dataset

    data = tmp_path / "questions.jsonl"
    pd.DataFrame({"question": questions(24, seed=4)}).to_json(data, orient="records", lines=True)
    assert main(["extract", "--model", folder_model.spec, "--dataset", str(data), "--layers", "0-3", "--engine", "ray", "--ray-actors", "2"]) == 0
    fmt = prompt_format(folder_model.tokenizer)
    assert f"activations (24, 4, {len(fmt.eoi_positions)}, 32)" in capsys.readouterr().out
    texts = load_dataset(str(data)).frame["question"].tolist()
    prompt_ids, _ = encode_prompts(texts, fmt, folder_model.tokenizer)
    local = extract(folder_model, prompt_ids, [0, 1, 2, 3], fmt.eoi_positions, shared_prefix=fmt.prefix_ids, progress=False)
    cached = cached_extract(folder_model, fmt, texts, [0, 1, 2, 3], fmt.eoi_positions, data_hash=load_dataset(str(data)).content_hash)
    assert "loaded from cache" in capsys.readouterr().err  # the file the Ray run wrote, read by the local path
    assert np.array_equal(cached, local)
