"""Local registries: manifest and card generation, filters, clear errors, broken entries, atomic pushes, the bundled registry."""

import fnmatch
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from probes_hub.bundled import RECIPE
from probes_hub.cli import main
from probes_hub.hub.manifest import MANIFEST_NAME
from probes_hub.hub.registry import Registry, list_probes, write_index
from probes_hub.paths import BUNDLED_REGISTRY
from probes_hub.probes import PROBE_TYPES, Probe
from probes_hub.schema.validation import ProbeValidationError


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_index_lists_every_folder_with_metrics(registry, toy_probes):
    _, results, _ = toy_probes
    manifest = json.loads((registry / MANIFEST_NAME).read_text())
    assert manifest["schema_version"] == 1 and manifest["about"] == "toy registry for tests"
    assert len(manifest["probes"]) == 6
    entry = Registry(registry).entry(label="solved", probe_type="linear")
    assert entry.task == "binary" and entry.metric == results["solved"].probes["linear"].metrics["test"].to_dict()
    assert set(entry.baselines) == {"embedding", "length", "tfidf"} and entry.layer is not None
    card = (registry / "README.md").read_text()
    assert all(f"`{e.name}`" in card for e in Registry(registry).list())


def test_filters_return_exactly_the_matching_probes(registry):
    names = {e.name for e in list_probes(registry, model="test/tiny-llama", label="difficulty")}
    assert names == {f"tiny-llama--toy--difficulty--{t}" for t in ("linear", "length", "tfidf")}
    assert [e.name for e in list_probes(registry, model="tiny-llama", label="solved", probe_type="tfidf")] == ["tiny-llama--toy--solved--tfidf"]
    assert list_probes(registry, dataset="math500") == []
    with pytest.raises(ValueError, match="Unknown filter"):
        list_probes(registry, colour="red")


def test_unknown_name_lists_close_matches(registry, capsys):
    with pytest.raises(KeyError, match="Close matches: tiny-llama--toy--solved--linear"):
        Registry(registry).entry("tiny-llama--toy--solvd--linear")
    assert main(["pull", "tiny-llama--toy--solvd--linear", "--registry", str(registry), "--out", "unused"]) == 2
    assert "Close matches" in capsys.readouterr().err


def test_registry_loads_by_filters_and_from_pretrained_loads_one_folder(registry, toy_probes, tmp_path):
    _, results, _ = toy_probes
    probe = Registry(registry).load(label="difficulty", probe_type="linear")
    np.testing.assert_array_equal(probe.coef_, results["difficulty"].probes["linear"].probe.coef_)
    with pytest.raises(KeyError, match="match 3 probes"):
        Registry(registry).load(label="difficulty")
    folder = Registry(registry).folder(Registry(registry).entry(label="difficulty", probe_type="linear").name)
    np.testing.assert_array_equal(Probe.from_pretrained(registry, subfolder=folder.name).coef_, probe.coef_)
    with pytest.raises(FileNotFoundError, match="Probe folder .* does not exist"):
        Probe.from_pretrained(str(tmp_path / "no such folder"))


def test_typo_registry_is_an_error_not_an_empty_listing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["list", "--registry", "runs/typo"]) == 2
    captured = capsys.readouterr()
    assert "runs/typo" in captured.err and "0 of 0" not in captured.out
    (tmp_path / "runs").mkdir()  # with a local runs/ folder, runs/typo is a missing path, not a Hub repo
    assert main(["list", "--registry", "runs/typo"]) == 2
    assert "Registry folder 'runs/typo' does not exist" in capsys.readouterr().err


def test_broken_entries_are_reported_and_the_rest_loads(registry, capsys):
    shutil.rmtree(registry / "tiny-llama--toy--difficulty--tfidf")  # manifest now references a missing folder
    (registry / "tiny-llama--toy--solved--length" / "weights.pkl").write_bytes(b"not really a pickle")
    report = Registry(registry).load_all()
    assert set(report.problems) == {"tiny-llama--toy--difficulty--tfidf", "tiny-llama--toy--solved--length"}
    assert "missing" in report.problems["tiny-llama--toy--difficulty--tfidf"] and ".pkl" in report.problems["tiny-llama--toy--solved--length"]
    assert len(report.probes) == 4
    assert main(["list", "--registry", str(registry)]) == 0
    captured = capsys.readouterr()
    assert "6 of 6 probes" in captured.out and "broken: tiny-llama--toy--difficulty--tfidf" in captured.err
    assert "broken: tiny-llama--toy--solved--length" in captured.err


def test_push_adds_keeps_others_and_invalid_push_changes_nothing(registry, toy_probes, tmp_path):
    _, results, _ = toy_probes
    target = tmp_path / "fresh"
    target.mkdir()
    first, second = results["difficulty"].probes["linear"].path, results["solved"].probes["linear"].path
    assert Registry(target).push([first]) == [first.name]
    Registry(target).push([second])
    assert {e.name for e in Registry(target).list()} == {first.name, second.name}
    assert _tree_bytes(target / first.name) == _tree_bytes(first)

    before = _tree_bytes(target)
    bad = tmp_path / "bad-probe"
    shutil.copytree(first, bad)
    config = json.loads((bad / "config.json").read_text())
    del config["label"]
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ProbeValidationError, match="label"):
        Registry(target).push([second, bad])
    assert _tree_bytes(target) == before


def test_pull_from_local_registry_is_byte_identical(registry, tmp_path, capsys):
    assert main(["pull", "--registry", str(registry), "--label", "solved", "--out", str(tmp_path / "pulled")]) == 0
    assert "pulled 3 probe(s)" in capsys.readouterr().out
    for name in ("linear", "length", "tfidf"):
        folder = f"tiny-llama--toy--solved--{name}"
        assert _tree_bytes(tmp_path / "pulled" / folder) == _tree_bytes(registry / folder)


def test_unknown_registry_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Registry folder .* does not exist"):
        Registry(str(tmp_path / "no" / "such" / "place"))


@pytest.mark.skipif(not (BUNDLED_REGISTRY / MANIFEST_NAME).exists(), reason="bundled registry not built")
def test_bundled_registry_is_complete_and_consistent(capsys):
    registry = Registry()
    assert registry.check() == {}
    entries = registry.list()
    labels = {e.label for e in entries}
    assert {"level", "grade", "log_output_chars", "success_rate", "irt_difficulty"} <= labels
    assert len({(e.dataset, e.label) for e in entries if e.label.startswith("correct:")}) == 29 + 27 + 25
    types: dict[tuple[str, str], set[str]] = {}
    for e in entries:
        types.setdefault((e.dataset, e.label, e.task), set()).add(e.probe_type)
    for (dataset, label, task), found in types.items():  # each (dataset, label) has exactly the probe types its recipe step asks for
        step = next(s for s in RECIPE if s.dataset == dataset and any(fnmatch.fnmatchcase(label, pattern) for pattern in s.labels))
        assert found == {t for t in step.probes if task in PROBE_TYPES[t].tasks}, (dataset, label)
    for entry in entries:
        config = json.loads((BUNDLED_REGISTRY / entry.folder / "config.json").read_text())
        assert config["metrics"]["test"] == entry.metric and entry.metric["n"] > 100
    assert main(["list", "--model", "SmolLM2-135M-Instruct", "--label", "level"]) == 0
    levels = sum(len(types[(s.dataset, "level", "graded")]) for s in RECIPE if "level" in s.labels)  # every probe type of every level step
    assert levels == 9 and f"{levels} of {len(entries)} probes" in capsys.readouterr().out


def test_push_to_hub_method_accepts_a_local_registry(toy_probes, tmp_path):
    _, results, _ = toy_probes
    probe = results["solved"].probes["tfidf"].probe
    target = tmp_path / "reg"
    target.mkdir()
    name = probe.push_to_hub(str(target))
    assert name == "tiny-llama--toy--solved--tfidf" and Registry(target).entry(name).probe_type == "tfidf"
    np.testing.assert_array_equal(Registry(target).load(name).coef_, probe.coef_)


def test_rebuilding_one_source_model_keeps_the_other_models_probes(toy_probes, tmp_path):
    """``make registry`` rebuilds the default model's probes; probes another model added (``--add``) are carried over with their paragraph."""
    import json
    import shutil

    from probes_hub.bundled import ADDED_MARKER, keep_other_models

    _, _, out = toy_probes
    old = tmp_path / "registry"
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    for folder in folders[:2]:
        shutil.copytree(folder, old / folder.name)
        twin = old / f"other-{folder.name}"
        shutil.copytree(folder, twin)
        config = json.loads((twin / "config.json").read_text())
        config["model"]["display_id"] = "test/other-llama"
        (twin / "config.json").write_text(json.dumps(config))
    write_index(old, about=f"Default model's probes.{ADDED_MARKER}test/other-llama** (`x`), added.{ADDED_MARKER}test/gone** (`y`), added.")
    building = tmp_path / "building"
    building.mkdir()
    paragraphs = keep_other_models(old, building, "test/tiny-llama")
    assert sorted(p.name for p in building.iterdir()) == sorted(f"other-{f.name}" for f in folders[:2])
    assert paragraphs == f"{ADDED_MARKER}test/other-llama** (`x`), added."
    assert keep_other_models(tmp_path / "none", building, "test/tiny-llama") == ""
