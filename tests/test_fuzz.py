"""Hardening: bad uploads, bad questions and bad API values against the real app (``python app.py`` driven by gradio_client)
and against the library. Every refusal must say why, leave the registry byte-identical and log no traceback; the valid
uploads are still accepted."""

import json
import re
import shutil
import urllib.request
from pathlib import Path

import pytest

from probes_hub.hub.audit import UploadQuota
from probes_hub.paths import BUNDLED_REGISTRY
from space_app.upload import UploadPolicy
from space_app.upload_access import UploadAccess

from .fuzz_cases import CASES, LINEAR, copy_probe, zipped
from .test_app import UPLOAD_SETTINGS, UPLOADERS, app_on_a_registry_copy
from .test_registry import _tree_bytes

FUZZ_POLICY = UploadPolicy(UploadAccess(on_space=False, tokens=(("fuzz", UPLOADERS["fuzz"]),)), UploadQuota(per_day=1000, stored_bytes=10**9))
"""The library's upload rule for the fuzz cases: the fuzz user may upload (what is refused is the upload itself)."""

pytestmark = pytest.mark.skipif(not (BUNDLED_REGISTRY / "manifest.json").exists(), reason="bundled registry not built")


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    """(client, registry copy, app log) of a launched app; stopped after the module."""
    from gradio_client import Client

    root = tmp_path_factory.mktemp("fuzz-app")
    with app_on_a_registry_copy(root, **{**UPLOAD_SETTINGS, "PROBES_HUB_UPLOADS_PER_DAY": "10"}) as (url, registry, _):
        yield Client(url, verbose=False), registry, root / "app.log"


def test_there_are_at_least_60_upload_cases_over_every_category():
    assert len(CASES) >= 60 and len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_upload_is_refused_through_the_app(fuzz_app, case, tmp_path):
    from gradio_client import handle_file

    client, registry, log = fuzz_app
    before = _tree_bytes(registry)
    with pytest.raises(Exception) as refused:  # gr.Error reaches API clients as an exception carrying the message
        client.predict([handle_file(str(path)) for path in case.build(tmp_path)], UPLOADERS["fuzz"], api_name="/upload")
    message = str(refused.value)
    assert "Rejected" in message and re.search(case.refusal, message, flags=re.S), message
    assert _tree_bytes(registry) == before
    assert "Traceback" not in log.read_text(errors="replace")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_upload_is_refused_by_the_library(smollm2_source, case, tmp_path):
    from probes_hub.hub.registry import Registry, write_index
    from space_app.upload import accept_upload

    registry = tmp_path / "registry"
    shutil.copytree(LINEAR, registry / LINEAR.name)
    write_index(registry)
    before = _tree_bytes(registry)
    upload = tmp_path / "upload"
    upload.mkdir()
    with pytest.raises(ValueError, match=case.refusal):  # ProbeValidationError is a ValueError
        accept_upload(case.build(upload), Registry(str(registry)), smollm2_source, policy=FUZZ_POLICY, token=UPLOADERS["fuzz"])
    assert _tree_bytes(registry) == before


def test_valid_upload_is_added_as_a_new_version_with_bounded_reevaluation(fuzz_app, tmp_path):
    """A bundled probe re-uploaded with a claimed score and a huge data.limit: added beside the original (never replacing it),
    re-evaluated on at most 200 test questions, stored with the re-evaluated metric; it shows in the Leaderboard."""
    from gradio_client import handle_file

    client, registry, log = fuzz_app
    original = _tree_bytes(registry / LINEAR.name)
    folder = copy_probe(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["metrics"]["test"]["value"] = 0.99
    config["data"]["limit"] = 10**9  # larger than the dataset: the same rows, and re-evaluation stays bounded
    (folder / "config.json").write_text(json.dumps(config))
    message = client.predict([handle_file(str(zipped(folder)))], UPLOADERS["fuzz"], api_name="/upload")
    name = f"{LINEAR.name}-v2"
    assert name in message and "Re-evaluated here on 200 test questions" in message, message
    stored = json.loads((registry / name / "config.json").read_text())
    assert stored["metrics"]["test"]["n"] == 200 and stored["metrics"]["test"]["value"] != 0.99
    assert stored["selection"].get("cv_score") is None  # an uploaded selection score is not trusted for ranking
    assert _tree_bytes(registry / LINEAR.name) == original
    board = client.predict("", "all", "all", "all", "all", api_name="/leaderboard")
    assert name in json.dumps(board[4])
    assert "Traceback" not in log.read_text(errors="replace")


QUESTION = "What is 2 + 3?"
BAD_PREDICT_CALLS = [
    (("", "math", "utility", 0.3, 0.7), r"type a question"),
    (("   \n\t ", "math", "utility", 0.3, 0.7), r"type a question"),
    (("\u200b\u200d\ufeff", "math", "utility", 0.3, 0.7), r"only invisible characters"),
    ((None, "math", "utility", 0.3, 0.7), r"not text"),
    ((["a list"], "math", "utility", 0.3, 0.7), r"not text"),
    ((QUESTION, "math", "utility", float("nan"), 0.7), r"lambda must be a number"),
    ((QUESTION, "math", "utility", float("inf"), 0.7), r"lambda must be a number"),
    ((QUESTION, "math", "cheapest", 0.3, float("-inf")), r"target must be a number"),
    ((QUESTION, "math", "utility", "abc", 0.7), r"lambda must be a number"),
    ((QUESTION, "math", "utility", None, 0.7), r"lambda must be a number"),
    ((QUESTION, "math", "utility", True, 0.7), r"lambda must be a number"),
    ((QUESTION, "math", "utility", -1, 0.7), r"lambda must be a number from 0 to 10"),
    ((QUESTION, "math", "cheapest", 0.3, 5), r"target must be a number from 0 to 1"),
    ((QUESTION, "no-such-pool", "utility", 0.3, 0.7), r"Unknown pool 'no-such-pool'"),
    ((QUESTION, None, "utility", 0.3, 0.7), r"Unknown pool"),
    ((QUESTION, "math", "random", 0.3, 0.7), r"Routing rule must be"),
]


@pytest.mark.parametrize("args, refusal", BAD_PREDICT_CALLS, ids=[f"predict-{i}" for i in range(len(BAD_PREDICT_CALLS))])
def test_bad_prediction_input_gets_a_clear_error(fuzz_app, args, refusal):
    """Through Gradio's REST API as raw JSON (NaN and infinities included, which gradio_client cannot send)."""
    client, _, log = fuzz_app
    request = urllib.request.Request(f"{client.src.rstrip('/')}/gradio_api/call/predict", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"data": list(args)}).encode())
    event_id = json.loads(urllib.request.urlopen(request).read())["event_id"]
    body = urllib.request.urlopen(f"{client.src.rstrip('/')}/gradio_api/call/predict/{event_id}").read().decode()
    assert "event: error" in body and re.search(refusal, body), body[-500:]
    assert "Traceback" not in log.read_text(errors="replace")


def test_long_and_odd_questions_are_answered(fuzz_app):
    client, _, log = fuzz_app
    long_raw = client.predict("How many primes are below " + "one hundred and " * 2000 + "one?", "math", "utility", 0.3, 0.7, api_name="/predict")[-1]
    assert long_raw["truncated"] and any("longer than 1024 tokens" in n for n in long_raw["notices"])
    for odd in ("<script>alert(1)</script> What is 1+1?", "∫ x² dx from 0 to 1 = ?", "What is 2+2?\x00"):
        raw = client.predict(odd, "math", "utility", 0.3, 0.7, api_name="/predict")[-1]
        assert raw["difficulty"] and not raw["truncated"]
    assert "Traceback" not in log.read_text(errors="replace")


def test_health_reports_the_worker(fuzz_app):
    client, _, _ = fuzz_app
    client.predict(QUESTION, "math", "utility", 0.3, 0.7, api_name="/predict")  # the probes load with the first prediction
    health = client.predict(api_name="/health")
    assert health["worker"]["state"] == "ready" and health["worker"]["pid"] > 0 and health["probes"] > 50 and not health["problems"]


def test_broken_probe_and_corrupt_manifest_keep_predict_and_leaderboard_working_and_a_killed_worker_recovers(tmp_path):
    """A registry whose manifest is truncated and whose chosen MATH-level probe has garbage weights: the app starts, Predict
    reads the next probe for that label and says why, the Leaderboard marks the broken entry. Then the model worker is
    killed with SIGKILL: a prediction succeeds again within 30 s."""
    import os
    import signal
    import time

    from gradio_client import Client

    from probes_hub.apply import choice_rank
    from probes_hub.hub.registry import Registry

    chosen = min((e for e in Registry().list(dataset="math", label="level") if e.model == "HuggingFaceTB/SmolLM2-135M-Instruct"),
                 key=lambda e: choice_rank(e.probe_type, e.task, e.cv_score))  # the probe the app reads for MATH level
    broken = chosen.name

    def break_it(registry: Path) -> None:
        (registry / broken / "model.safetensors").write_bytes(b"garbage")
        manifest = registry / "manifest.json"
        manifest.write_bytes(manifest.read_bytes()[:5000])

    with app_on_a_registry_copy(tmp_path, break_it) as (url, _, _):
        client = Client(url, verbose=False)
        raw = client.predict(QUESTION, "math", "utility", 0.3, 0.7, api_name="/predict")[-1]
        math_level = next(r for r in raw["difficulty"] if r["probe"] == "math level")
        assert math_level["probe_type"] != chosen.probe_type and any(broken in notice for notice in raw["notices"]) and raw["routing"]
        health = client.predict(api_name="/health")
        assert broken in health["problems"]  # the truncated manifest was rebuilt from the folders at start, and /health says so
        assert any("rebuilt manifest.json from the probe folders (it was missing or unreadable)" in line for line in health["recovered"])
        board = client.predict("", "all", "all", "all", "all", api_name="/leaderboard")
        rows = board[4]["data"]
        status_column = board[4]["headers"].index("status")
        assert any(broken in json.dumps(row) and row[status_column].startswith("broken") for row in rows) and len(rows) >= 245

        os.kill(health["worker"]["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        while True:
            try:
                raw = client.predict(QUESTION, "math", "utility", 0.3, 0.7, api_name="/predict")[-1]
                break
            except Exception as error:  # the request that meets the dead worker, and any sent while it restarts, say so
                assert "restart" in str(error), error
                assert time.monotonic() - killed_at < 30
                time.sleep(0.5)
        assert raw["difficulty"] and time.monotonic() - killed_at < 30
        after = client.predict(api_name="/health")["worker"]
        assert after["state"] == "ready" and after["restarts"] == 1 and after["pid"] != health["worker"]["pid"]
    assert "Traceback" not in (tmp_path / "app.log").read_text(errors="replace")
