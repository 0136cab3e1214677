"""Regenerate the probe leaderboard: every probe of a registry re-evaluated on the test split of its dataset.

``python -m eval.leaderboard --registry REG --data-dir DIR --out DIR`` writes leaderboard.csv,
leaderboard.json and charts atomically (the previous leaderboard stays until the new one is complete) and
ends with ``RESULT rows=N failed=F seconds=T``. The split is the one recorded in each probe's config and
defined in ``probes_hub.datasets.row_roles``; a probe or dataset that fails gets a row with the error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from probes_hub import __version__
from probes_hub.constants import EMBEDDED_DISPLAY_ID, SCHEMA_VERSION
from probes_hub.datasets import BUILTIN, load_dataset, row_roles
from probes_hub.metrics import ece_metric, headline_metric
from probes_hub.feature_source import ModelFeatures
from probes_hub.models import load_model
from probes_hub.predict import predict_probes
from probes_hub.registry import Registry

FILES = ("leaderboard.csv", "leaderboard.json")
COLUMNS = ["name", "status", "error", "model", "dataset", "label", "task", "probe_type", "layer", "position", "metric", "value", "low", "high",
           "n", "ece", "baseline_length", "baseline_tfidf", "delta_over_best_baseline", "recorded_value", "evaluated_at", "probe_revision"]


def evaluate_registry(registry: Registry, *, data_dir: str | None = None, model: str | None = None, use_cache: bool = True) -> tuple[pd.DataFrame, dict]:
    """One row per manifest entry (sorted by name) and the run's metadata (data hashes, code version)."""
    evaluated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entries = registry.list()
    loaded = registry.load_all()
    rows = {e.name: _base_row(e, evaluated_at) for e in entries}
    for name, problem in loaded.problems.items():
        rows[name].update(status="failed", error=problem)
    groups: dict[tuple, list] = defaultdict(list)
    for name, probe in loaded.probes.items():
        data = probe.info["data"]
        groups[(probe.info["model"]["fingerprint"], data["dataset"], data.get("limit"), data.get("seed", 0))].append(name)
    data_hashes, models = {}, {}
    for (fingerprint, dataset_name, limit, seed), names in sorted(groups.items(), key=lambda kv: kv[0][1:3]):
        try:
            dataset = _load_group_dataset(dataset_name, [loaded.probes[n] for n in names], data_dir).subset(limit, seed=seed)
            data_hashes[f"{dataset_name}:{limit}"] = dataset.content_hash
            source = models.get(fingerprint) or models.setdefault(fingerprint, _model_for(fingerprint, loaded.probes[names[0]], model))
            _evaluate_group(registry, source, dataset, names, loaded.probes, rows, use_cache=use_cache, seed=seed)
        except Exception as error:  # a missing dataset or model fails its rows only
            for name in names:
                rows[name].update(status="failed", error=f"{type(error).__name__}: {error}")
    table = pd.DataFrame([rows[e.name] for e in entries], columns=COLUMNS)
    _add_baseline_columns(table)
    return table, {"data_hashes": data_hashes, "models": sorted(models)}


def _load_group_dataset(name: str, probes: list, data_dir: str | None):
    """A built-in dataset by name, or the local file the probes were trained on (with their label columns)."""
    if name in BUILTIN:
        return load_dataset(name, data_dir_override=data_dir)
    labels = sorted({p.info["label"]["name"] for p in probes})
    return load_dataset(probes[0].info["data"]["source"], label_columns=labels)


def _base_row(entry, evaluated_at: str) -> dict:
    return {"name": entry.name, "status": "pending", "error": "", "model": entry.model, "dataset": entry.dataset, "label": entry.label,
            "task": entry.task, "probe_type": entry.probe_type, "layer": entry.layer, "position": entry.position,
            "metric": entry.metric.get("name"), "recorded_value": entry.metric.get("value"), "evaluated_at": evaluated_at}


def _model_for(fingerprint: str, probe, model: str | None) -> ModelFeatures:
    """The model a probe group was trained on: ``--model`` if given, the embedded one for its display id, else its Hub id."""
    display = probe.info["model"]["display_id"]
    lm = load_model(model if model else (None if display == EMBEDDED_DISPLAY_ID else display))
    if lm.fingerprint != fingerprint and probe.probe_type != "tfidf":
        raise ValueError(f"model {lm.display_id} has fingerprint {lm.fingerprint}, the probes need {fingerprint}")
    return ModelFeatures(lm)


def _evaluate_group(registry, source, dataset, names, probes, rows, *, use_cache: bool, seed: int) -> None:
    """Predict every probe of one (model, dataset) group from one shared extraction, and score it on its test rows."""
    if any(probes[n].info["data"]["content_hash"] != dataset.content_hash for n in names):
        raise ValueError(f"{dataset.name} changed since training (content hash differs); retrain or restore the data")
    folders = [registry.folder(n) for n in names]
    predictions = predict_probes(source, {n: probes[n] for n in names}, dataset.frame["question"].tolist(), data_hash=dataset.content_hash,
                                 use_cache=use_cache)
    for name, folder in zip(names, folders):
        probe = probes[name]
        label = probe.info["label"]["name"]
        test = row_roles(dataset, label, seed=seed)["test"]
        y = dataset.frame[label].to_numpy(dtype=float)[test]
        prediction = predictions[name][test]
        metric = headline_metric(probe.task, y, prediction)
        ece = ece_metric(y, prediction).value if probe.task == "binary" else None
        rows[name].update(status="ok", value=metric.value, low=metric.low, high=metric.high, n=metric.n, ece=ece,
                          probe_revision=_folder_revision(folder))


def _folder_revision(folder: Path) -> str:
    """sha256 (12 hex) of the probe's config and weights: changes whenever the probe does."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:12]


def _add_baseline_columns(table: pd.DataFrame) -> None:
    """Length / TF-IDF values of the same (model, dataset, label), and each probe's margin over the better one."""
    ok = table[table["status"] == "ok"]
    for kind in ("length", "tfidf"):
        values = ok[ok["probe_type"] == kind].set_index(["model", "dataset", "label"])["value"]
        table[f"baseline_{kind}"] = [values.get((m, d, lab), np.nan) for m, d, lab in zip(table["model"], table["dataset"], table["label"])]
    table["delta_over_best_baseline"] = table["value"] - table[["baseline_length", "baseline_tfidf"]].max(axis=1)


def write_leaderboard(table: pd.DataFrame, metadata: dict, out: str | Path, *, registry_root: str | Path | None = None) -> list[Path]:
    """Write the CSV, the JSON and the charts into ``out`` so that a crash never leaves a half-written leaderboard.

    Everything is written into a temp folder first, then moved in with ``os.replace``; leaderboard.json goes last.
    """
    from probes_hub.charts import leaderboard_charts

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"schema_version": SCHEMA_VERSION, "refreshed_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
               "code_version": __version__, **metadata, "rows": json.loads(table.to_json(orient="records"))}
    with tempfile.TemporaryDirectory(dir=out, prefix=".leaderboard.") as tmp:
        tmp = Path(tmp)
        table.to_csv(tmp / "leaderboard.csv", index=False)
        (tmp / "leaderboard.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        written = []
        for name, chart in leaderboard_charts(table, registry_root).items():
            (tmp / f"{name}.vl.json").write_text(chart.to_json(), encoding="utf-8")
            (tmp / f"{name}.html").write_text(chart.to_html(), encoding="utf-8")
            written += [f"{name}.vl.json", f"{name}.html"]
        for name in [*written, "leaderboard.csv", "leaderboard.json"]:
            os.replace(tmp / name, out / name)
    return [out / name for name in ["leaderboard.csv", "leaderboard.json", *written]]


def regenerate(registry: str | None, out: str | Path, *, data_dir: str | None = None, model: str | None = None, push: str | None = None,
               use_cache: bool = True) -> tuple[pd.DataFrame, float]:
    """Evaluate and write the leaderboard (and push it to a Hub dataset repo when ``push`` is given); returns (table, seconds)."""
    started = time.time()
    reg = Registry(registry)
    table, metadata = evaluate_registry(reg, data_dir=data_dir, model=model, use_cache=use_cache)
    metadata.update(registry=registry or "bundled registry/", registry_generated_at=reg.manifest().generated_at)
    write_leaderboard(table, metadata, out, registry_root=reg.root if reg.is_local else None)
    if push:
        push_leaderboard(out, push)
    return table, time.time() - started


def push_leaderboard(out: str | Path, repo_id: str) -> str:
    """Upload leaderboard files to a Hub dataset repo (created if needed) in one commit; returns the commit id."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(out), allow_patterns=["*.csv", "*.json", "*.html"],
                             commit_message="Refresh leaderboard")
    return info.oid


def read_leaderboard(source: str | Path) -> dict:
    """A leaderboard.json from a local folder or a Hub dataset repo id."""
    path = Path(source) / "leaderboard.json"
    if not path.exists():
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(str(source), "leaderboard.json", repo_type="dataset"))
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.leaderboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default=None, help="registry: local folder or Hub repo id (default: the bundled registry/)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: $PROBES_HUB_DATA_DIR or ../shared/data)")
    parser.add_argument("--out", default="leaderboard", help="output folder (default leaderboard/)")
    parser.add_argument("--model", default=None, help="model to extract with (default: the one each probe group was trained on)")
    parser.add_argument("--push", default=None, metavar="REPO", help="also upload to this Hub dataset repo (uses HF_TOKEN / HF_ENDPOINT)")
    parser.add_argument("--every", type=float, default=None, metavar="SECONDS", help="keep running and regenerate every SECONDS (for cron-less hosts)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the activation cache")
    args = parser.parse_args(argv)
    while True:
        table, seconds = regenerate(args.registry, args.out, data_dir=args.data_dir, model=args.model, push=args.push, use_cache=not args.no_cache)
        failed = int((table["status"] != "ok").sum())
        for row in table[table["status"] != "ok"].itertuples():
            print(f"failed: {row.name}: {row.error}", file=sys.stderr)
        print(f"RESULT rows={len(table)} failed={failed} seconds={seconds:.1f}", flush=True)
        if args.every is None:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
