"""The app's model worker process: same identity and features as the model in process, errors relayed clearly."""

import numpy as np
import pytest

from probes_hub.extract.feature_source import ModelFeatures
from probes_hub.extract.models import load_model
from space_app.model_worker import ModelWorker, ModelWorkerError

from .conftest import tiny_model

QUESTIONS = ["what is one plus two", "find x if x times two is ten", "solve"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    lm = tiny_model()
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def test_worker_gives_the_same_features_as_the_model_in_process(tiny_folder):
    local = ModelFeatures(load_model(str(tiny_folder)))
    worker = ModelWorker(str(tiny_folder))
    try:
        assert worker.display_id == local.display_id  # known before the model has loaded
        assert (worker.fingerprint, worker.hidden_size) == (local.fingerprint, local.hidden_size)
        for layers in ([0, 2], []):
            remote, remote_truncated = worker.features(QUESTIONS, layers, max_length=12)
            expected, expected_truncated = local.features(QUESTIONS, layers, max_length=12)
            assert remote_truncated == expected_truncated and any(expected_truncated)
            np.testing.assert_array_equal(remote.token_counts, expected.token_counts)
            assert (remote.layers, remote.positions) == (expected.layers, expected.positions)
            if layers:
                np.testing.assert_array_equal(remote.activations, expected.activations)
            else:
                assert remote.activations is None
        with pytest.raises(ValueError, match="layers must be within"):
            worker.features(QUESTIONS, [99])
        assert worker.features(QUESTIONS[:1], [1])[0].activations.shape == (1, 1, len(expected.positions), local.hidden_size)  # still serving
    finally:
        worker.close()
    assert worker.process.returncode == 0


def test_worker_that_cannot_load_its_model_says_why(tmp_path):
    worker = ModelWorker(str(tmp_path / "missing.gguf"))
    try:
        with pytest.raises(ModelWorkerError, match="GGUF file not found"):
            worker.info()
    finally:
        worker.close()


def test_a_killed_worker_fails_only_the_request_in_flight_and_serves_again_within_30_s(tiny_folder):
    import os
    import signal
    import time

    worker = ModelWorker(str(tiny_folder), monitor_every=0.1)
    try:
        worker.features(QUESTIONS, [1])
        assert worker.status()["state"] == "ready"
        first_pid = worker.process.pid
        os.kill(first_pid, signal.SIGKILL)
        worker.process.wait()
        with pytest.raises(ModelWorkerError, match="restart"):  # the request that meets the dead process gets a clear message
            worker.features(QUESTIONS, [1])
        killed_at = time.monotonic()
        while True:
            try:
                features, _ = worker.features(QUESTIONS, [1])
                break
            except ModelWorkerError:
                assert time.monotonic() - killed_at < 30, worker.status()
                time.sleep(0.2)
        assert features.activations.shape[0] == len(QUESTIONS)
        status = worker.status()
        assert status["state"] == "ready" and status["restarts"] == 1 and status["pid"] != first_pid
    finally:
        worker.close()
