"""Bad probe uploads, by category: each builds its files from a bundled probe and names the refusal it must get.

Used by tests/test_fuzz.py against the running app (gradio_client) and against the library (check_upload).
"""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from probes_hub.paths import BUNDLED_REGISTRY

LINEAR = BUNDLED_REGISTRY / "smollm2-135m-instruct--math500--level--linear"
TFIDF = BUNDLED_REGISTRY / "smollm2-135m-instruct--math500--level--tfidf"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[Path]]
    """Writes the upload's files under the given folder and returns their paths."""
    refusal: str
    """A regular expression the refusal message must match."""


def copy_probe(tmp: Path, source: Path = LINEAR) -> Path:
    folder = tmp / source.name
    shutil.copytree(source, folder)
    return folder


def zipped(folder: Path, target: Path | None = None, extra: dict[str, bytes] | None = None) -> Path:
    target = target or folder.parent / "upload.zip"
    extra = extra or {}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            name = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            if path.is_file() and name not in extra:  # an extra member of the same name replaces the probe's file
                zf.write(path, name)
        for name, data in extra.items():
            zf.writestr(name, data)
    return target


def config_case(name: str, change: Callable[[dict], None], refusal: str, source: Path = LINEAR) -> Case:
    """A case whose config.json is the bundled probe's with ``change`` applied."""
    def build(tmp: Path) -> list[Path]:
        folder = copy_probe(tmp, source)
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
        return [zipped(folder)]
    return Case(name, build, refusal)


def weights_case(name: str, change: Callable[[dict], dict], refusal: str, source: Path = LINEAR) -> Case:
    """A case whose model.safetensors holds the bundled probe's arrays after ``change``."""
    def build(tmp: Path) -> list[Path]:
        folder = copy_probe(tmp, source)
        arrays = change(load_file(str(folder / "model.safetensors")))
        save_file(arrays, str(folder / "model.safetensors"))
        return [zipped(folder)]
    return Case(name, build, refusal)


def raw_config_case(name: str, text: bytes, refusal: str) -> Case:
    def build(tmp: Path) -> list[Path]:
        folder = copy_probe(tmp)
        (folder / "config.json").write_bytes(text)
        return [zipped(folder)]
    return Case(name, build, refusal)


def file_case(name: str, files: dict[str, bytes], refusal: str) -> Case:
    """Loose files uploaded as they are."""
    def build(tmp: Path) -> list[Path]:
        paths = []
        for file_name, data in files.items():
            (tmp / file_name).write_bytes(data)
            paths.append(tmp / file_name)
        return paths
    return Case(name, build, refusal)


def zip_case(name: str, members: Callable[[], dict[str, bytes]], refusal: str, *, with_probe: bool = True) -> Case:
    """A zip of the bundled probe (optionally) plus ``members`` written under their own names."""
    def build(tmp: Path) -> list[Path]:
        if with_probe:
            return [zipped(copy_probe(tmp), extra=members())]
        target = tmp / "upload.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, data in members().items():
                zf.writestr(member, data)
        return [target]
    return Case(name, build, refusal)


def _symlink_zip(tmp: Path) -> list[Path]:
    target = zipped(copy_probe(tmp))
    with zipfile.ZipFile(target, "a") as zf:
        info = zipfile.ZipInfo("smollm2-135m-instruct--math500--level--linear/reports/link.csv")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return [target]


def _loose_probe_files(tmp: Path, extra: dict[str, bytes]) -> list[Path]:
    folder = copy_probe(tmp)
    for name, data in extra.items():
        (folder / name).write_bytes(data)
    return [folder / "config.json", folder / "model.safetensors", *(folder / name for name in extra)]


def _set(path: str, value) -> Callable[[dict], None]:
    def change(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value
    return change


def _delete(path: str) -> Callable[[dict], None]:
    def change(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]
    return change


def _deep(levels: int) -> bytes:
    return ("[" * levels + "]" * levels).encode()


def _nested_params(config: dict) -> None:
    node = config["params"]
    for _ in range(20):
        node["x"] = {}
        node = node["x"]


def _big_vocabulary(arrays: dict) -> dict:
    n = 250_000
    terms = "\n".join(f"w{i}" for i in range(n)).encode()
    return {"coef_": np.zeros(n), "intercept_": np.zeros(1), "idf_levels_": np.ones(1), "idf_codes_": np.zeros(n, dtype=np.uint16),
            "vocabulary_": np.frombuffer(terms, dtype=np.uint8)}


def _zip_bomb() -> dict[str, bytes]:
    return {"smollm2-135m-instruct--math500--level--linear/reports/zeros.csv": bytes(40 * 1024 * 1024)}


PROBE = "smollm2-135m-instruct--math500--level--linear"
SAFETENSORS_MAGIC_LIE = (10**12).to_bytes(8, "little") + b"{}"

CASES: list[Case] = [
    # -- files and layout ---------------------------------------------------------------------------------------------
    file_case("pickle file", {"probe.pkl": b"\x80\x04K\x01."}, r"probe\.pkl.*not part of a probe folder"),
    file_case("torch file", {"model.pt": b"PK\x03\x04"}, r"model\.pt.*not part of a probe folder"),
    file_case("executable", {"run.sh": b"#!/bin/sh\nrm -rf /\n"}, r"run\.sh.*not part of a probe folder"),
    file_case("only a readme", {"README.md": b"# hi"}, r"no config\.json"),
    file_case("manifest uploaded", {"manifest.json": b"{}"}, r"manifest\.json is written by the registry"),
    file_case("random bytes as zip", {"probe.zip": b"not a zip at all"}, r"not a readable zip"),
    Case("config only", lambda tmp: [copy_probe(tmp) / "config.json"], r"no model\.safetensors"),
    Case("weights only", lambda tmp: [copy_probe(tmp) / "model.safetensors"], r"no config\.json"),
    Case("loose files with a pickle", lambda tmp: _loose_probe_files(tmp, {"extra.pkl": b"\x80\x04."}), r"extra\.pkl.*not part of a probe folder"),
    Case("loose files with a non-ASCII name", lambda tmp: _loose_probe_files(tmp, {"rëport.csv": b"a,b\n"}), r"Unsafe file name"),
    zip_case("empty zip", dict, r"empty zip", with_probe=False),
    zip_case("zip of a readme", lambda: {"README.md": b"# hi"}, r"no config\.json", with_probe=False),
    zip_case("manifest in zip", lambda: {f"{PROBE}/manifest.json": b'{"probes": []}'}, r"manifest\.json is written by the registry"),
    zip_case("zip slip", lambda: {"../../evil.csv": b"x"}, r"Unsafe path in zip"),
    zip_case("absolute path", lambda: {"/tmp/evil.csv": b"x"}, r"Unsafe path in zip"),
    Case("symlink in zip", _symlink_zip, r"Unsafe path in zip"),
    zip_case("non-ASCII name", lambda: {f"{PROBE}/reports/rëport.csv": b"x"}, r"Unsafe file name"),
    zip_case("name with spaces", lambda: {f"{PROBE}/reports/my report.csv": b"x"}, r"Unsafe file name"),
    zip_case("hidden file", lambda: {f"{PROBE}/.config.json": b"{}"}, r"Unsafe file name"),
    zip_case("unknown file type", lambda: {f"{PROBE}/reports/tool.exe": b"MZ"}, r"not part of a probe folder"),
    zip_case("nested folder", lambda: {f"{PROBE}/reports/deeper/a.csv": b"x"}, r"not part of a probe folder"),
    zip_case("two top folders", lambda: {"other/config.json": b"{}"}, r"not part of a probe folder"),
    zip_case("too many files", lambda: {f"{PROBE}/reports/r{i}.csv": b"x" for i in range(12)}, r"at most 12"),
    zip_case("too many reports", lambda: {f"{PROBE}/reports/r{i}.csv": b"x" for i in range(7)}, r"report files; at most 8"),
    zip_case("report too large", lambda: {f"{PROBE}/reports/big.csv": bytes(3 * 1024 * 1024)}, r"big\.csv.*limit"),
    zip_case("zip bomb", _zip_bomb, r"limit"),
    zip_case("weights too large", lambda: {f"{PROBE}/model.safetensors": bytes(17 * 1024 * 1024)}, r"model\.safetensors.*limit"),
    raw_config_case("config too large", b" " * (2 * 1024 * 1024) + b"{}", r"config\.json.*limit"),
    # -- config syntax and schema -----------------------------------------------------------------------------------------
    raw_config_case("invalid JSON", b'{"schema_version": 2,\n "probe_type": }', r"invalid JSON at line 2"),
    raw_config_case("not UTF-8", b'{"a": "\xff\xfe"}', r"not UTF-8"),
    raw_config_case("deeply nested JSON", _deep(100_000), r"nested too deeply"),
    raw_config_case("a JSON list", b"[1, 2]", r"expected a JSON object"),
    config_case("nesting beyond the limit", _nested_params, r"nested \d+ levels deep"),
    config_case("schema version 99", _set("schema_version", 99), r"schema_version 99 is not supported"),
    config_case("missing label", _delete("label"), r"missing field\(s\) \['label'\]"),
    config_case("string for a count", _set("data.n_train", "ten"), r"data\.n_train must be a non-negative integer"),
    config_case("string for hidden size", _set("model.hidden_size", "576"), r"model\.hidden_size must be a positive integer"),
    config_case("one-element range", _set("label.range", [1.0]), r"label\.range must be \[low, high\]"),
    config_case("equal range ends", _set("label.range", [3.0, 3.0]), r"label\.range must be \[low, high\]"),
    config_case("NaN range", _set("label.range", [float("nan"), 5.0]), r"label\.range must be \[low, high\]"),
    config_case("unknown task", _set("label.task", "ordinal"), r"label\.task must be one of"),
    config_case("unknown probe type", _set("probe_type", "evil"), r"unknown probe_type 'evil'"),
    config_case("layer 999", _set("selection.layer", 999), r"layer\(s\) \[999\].*layers 0 to 29"),
    config_case("negative searched layer", _set("selection.layers_searched", [-1, 3]), r"layer\(s\) \[-1\]"),
    config_case("position not an EOI position", _set("selection.position", 7), r"position 7 is not one of"),
    config_case("string for a layer", _set("selection.layer", "5"), r"selection\.layer must be an integer"),
    config_case("calibration not numbers", _set("calibration", {"a": "x", "b": 1}), r"calibration\.a and calibration\.b"),
    config_case("malformed metric", _set("metrics.test", {"value": 0.99}), r"metrics\.test must have exactly"),
    config_case("unknown constructor argument", _set("params.evil", 1), r"params do not match"),
    config_case("params task disagrees", _set("params.task", "binary"), r"disagrees with label\.task"),
    # -- meaning: model, data, names ---------------------------------------------------------------------------------
    config_case("other hidden size", _set("model.hidden_size", 1024), r"hidden size 1024"),
    config_case("other model's fingerprint", _set("model.fingerprint", "hf:meta-llama/Llama-3.1-70B"), r"not on the loaded model"),
    config_case("text probe for another model", _set("model.display_id", "meta-llama/Llama-3.1-70B-Instruct"),
                r"this registry serves HuggingFaceTB/SmolLM2-135M-Instruct", source=TFIDF),
    config_case("local dataset", _set("data.dataset", "products"), r"not on a built-in dataset"),
    config_case("server path as source", _set("data.source", "/etc/passwd"), r"paths are not accepted"),
    config_case("relative path as source", _set("data.source", "../shared/data/math500/test.jsonl"), r"paths are not accepted"),
    config_case("markdown link as dataset", _set("data.dataset", "[x](http://evil.example)"), r"data\.dataset must be a plain name"),
    config_case("HTML in label name", _set("label.name", "<img src=x onerror=alert(1)>"), r"label\.name must be a plain name"),
    config_case("markdown image label", _set("label.name", "![a](http://evil.example/a.png)"), r"label\.name must be a plain name"),
    config_case("unknown label", _set("label.name", "difficulty"), r"has no label 'difficulty'"),
    config_case("data changed", _set("data.content_hash", "0000000000000000"), r"changed since the probe was trained"),
    config_case("negative data limit", _set("data.limit", -5), r"data\.limit must be a positive integer"),
    config_case("string for the seed", _set("params.cv_folds", "five"), r"cv_folds"),
    # -- weights ----------------------------------------------------------------------------------------------------
    weights_case("float16 weights", lambda a: {**a, "coef_": a["coef_"].astype(np.float16)}, r"'coef_' has dtype float16"),
    weights_case("bool weights", lambda a: {**a, "coef_": a["coef_"] > 0}, r"'coef_' has dtype bool"),
    weights_case("wrong shape", lambda a: {**a, "coef_": a["coef_"][:575]}, r"'coef_' has shape \(575,\)"),
    weights_case("NaN weights", lambda a: {**a, "coef_": np.full_like(a["coef_"], np.nan)}, r"NaN or infinite"),
    weights_case("zero scale", lambda a: {**a, "scale_": np.zeros_like(a["scale_"])}, r"zero or negative scales"),
    weights_case("extra array", lambda a: {**a, "payload": np.zeros(3)}, r"unexpected arrays \['payload'\]"),
    weights_case("missing array", lambda a: {k: v for k, v in a.items() if k != "mean_"}, r"lacks \['mean_'\]"),
    weights_case("huge vocabulary", _big_vocabulary, r"250,000 terms; the limit is 200,000", source=TFIDF),
    zip_case("corrupt safetensors", lambda: {f"{PROBE}/model.safetensors": b"\x00" * 64}, r"not a readable safetensors"),
    zip_case("safetensors header lies", lambda: {f"{PROBE}/model.safetensors": SAFETENSORS_MAGIC_LIE}, r"not a readable safetensors"),
]
