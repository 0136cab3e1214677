"""The probe leaderboard: every probe of a registry re-evaluated on the test split of its dataset, its one
column specification, and reading, writing and pushing it.

``probes-hub leaderboard --registry REG --data-dir DIR --out DIR`` writes leaderboard.csv, leaderboard.json
and charts atomically (the previous leaderboard stays until the new one is complete). The split is the one
recorded in each probe's config and defined in ``probes_hub.data.datasets.row_roles``; a probe or dataset
that fails gets a row with the error. The app shows the same table (:func:`leaderboard_table`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from probes_hub.apply import source_for_probe
from probes_hub.atomic import atomic_folder, atomic_write_text, recover
from probes_hub.cache import sha256_text
from probes_hub.constants import LIBRARY_VERSION
from probes_hub.extract.packaged import ModelNotInstalled
from probes_hub.extract.precision import FLOAT32
from probes_hub.hub.manifest import MANIFEST_NAME, ProbeEntry
from probes_hub.hub.registry import Registry
from probes_hub.lock import folder_lock, lock_path
from probes_hub.matrix import matrix_markdown, matrix_table, model_task_cells
from probes_hub.probes import baseline_types, serving_dtype
from probes_hub.progress import progress_bar
from probes_hub.schema.naming import is_hub_id

LEADERBOARD_SCHEMA_VERSION = 1
FILES = ("leaderboard.csv", "leaderboard.json")


@dataclass(frozen=True)
class Column:
    """One leaderboard column: its name in files, its header in the app, and whether the app shows it."""

    name: str
    title: str
    shown: bool = True
    numeric: bool = False


def _columns() -> tuple[Column, ...]:
    baselines = tuple(Column(f"baseline_{kind}", f"{kind} baseline", numeric=True) for kind in baseline_types())
    return (
        Column("model", "model"), Column("dataset", "dataset"), Column("label", "label"), Column("probe_type", "probe"),
        Column("metric", "metric"), Column("value", "test value", numeric=True), Column("low", "CI low", numeric=True),
        Column("high", "CI high", numeric=True), Column("n", "n"), Column("partial_length", "partial ρ given length", numeric=True),
        Column("partial_low", "partial CI low", numeric=True), Column("partial_high", "partial CI high", numeric=True), *baselines,
        Column("delta_over_best_baseline", "minus best baseline", numeric=True), Column("recorded_value", "value at training", numeric=True),
        Column("status", "status"), Column("name", "probe folder"), Column("task", "task", shown=False), Column("layer", "layer", shown=False),
        Column("position", "position", shown=False), Column("ece", "ECE", shown=False, numeric=True), Column("error", "error", shown=False),
        Column("evaluated_at", "evaluated at", shown=False), Column("probe_revision", "revision", shown=False),
        Column("cv_score", "CV score (training rows)", shown=False, numeric=True),
        Column("carried_over", "carried over (probe, data and code unchanged since the last refresh)", shown=False),
        Column("dtype", "read in (precision)", shown=False),
        Column("precision_check", "precision check (probes-hub verify-dtype)", shown=False),
    )


COLUMNS = _columns()
"""The single column specification: files, the app and the charts all read it."""
COLUMN_NAMES = [c.name for c in COLUMNS]
RECORDED = "recorded at training (not yet re-evaluated)"
SKIPPED = "skipped: its source model is not installed here; showing the value recorded at training"


def evaluate_registry(registry: Registry, *, data_dir: str | None = None, model: str | None = None, use_cache: bool = True,
                      previous: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per manifest entry (sorted by name) and the run's metadata (data hashes, code version).

    ``previous``: the last leaderboard (its ``leaderboard.json``); a probe whose folder revision, data hash and library version
    match its ok row there is not re-evaluated: the row is carried over (``carried_over``), so an unchanged registry costs no model.
    """
    from probes_hub.data.datasets import training_dataset

    evaluated_at = datetime.now(UTC).isoformat(timespec="seconds")
    with registry.reading() as manifest:  # one consistent snapshot: no change of the registry lands while its probes are read
        entries = manifest.select()
        loaded = registry.load_all()
        revisions = {name: _folder_revision(registry.folder(name)) for name in loaded.probes}
    by_name = {e.name: e for e in entries}
    rows = {e.name: {**_entry_row(e), "status": "pending", "evaluated_at": evaluated_at, "carried_over": False} for e in entries}
    dtype = requested_model_dtype()
    for name, probe in loaded.probes.items():
        rows[name]["precision_check"] = "; ".join(check.summary() for check in probe.record_.precision.values()) or None
    for name, problem in loaded.problems.items():
        rows[name].update(status="failed", error=problem)
    groups: dict[tuple, list] = defaultdict(list)
    for name, probe in loaded.probes.items():
        data = probe.record_.data
        groups[(probe.fingerprint, data.dataset, data.limit, data.seed)].append(name)
    data_hashes, models = {}, {}
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][1], str(kv[0][2])))
    for (fingerprint, dataset_name, limit, seed), names in progress_bar(ordered, desc="Leaderboard groups", unit="group"):
        try:
            probes = [loaded.probes[n] for n in names]
            dataset = training_dataset(probes[0].record_.data, sorted({p.record_.label.name for p in probes}), data_dir=data_dir)
            data_hashes[f"{dataset_name}:{limit}"] = dataset.content_hash
            names = [n for n in names if not _carry_over(rows[n], previous, revisions[n], f"{dataset_name}:{limit}", dataset.content_hash, dtype)]
            if not names:
                continue
            source = models.get(fingerprint) or models.setdefault(fingerprint, source_for_probe(probes[0], model))
            _evaluate_group(source, dataset, names, loaded.probes, revisions, rows, use_cache=use_cache, seed=seed)
        except ModelNotInstalled as error:  # an optional source model absent here: its rows keep their recorded values, not a failure
            for name in names:
                rows[name].update(recorded_metric(by_name[name]), status=SKIPPED, error=str(error))
        except Exception as error:  # a missing dataset or model fails its rows only
            for name in names:
                rows[name].update(status="failed", error=f"{type(error).__name__}: {error}")
    table = pd.DataFrame([rows[e.name] for e in entries], columns=COLUMN_NAMES)
    add_baseline_columns(table)
    return table, {"data_hashes": data_hashes, "models": sorted(str(m) for m in models), "dtype": dtype}


def requested_model_dtype() -> str:
    """The precision the source models run in for this evaluation (``--dtype`` / ``PROBES_HUB_DTYPE``, ``auto`` resolved here)."""
    from probes_hub.extract.models import default_device
    from probes_hub.extract.precision import resolve_dtype

    return resolve_dtype(None, default_device().type)


def _carry_over(row: dict, previous: dict | None, revision: str, data_key: str, data_hash: str, dtype: str) -> bool:
    """Fill ``row`` from the previous leaderboard's row when nothing it depends on changed (probe folder, data, library version,
    the models' precision)."""
    if not previous or previous.get("code_version") != LIBRARY_VERSION or previous.get("data_hashes", {}).get(data_key) != data_hash \
            or previous.get("dtype", FLOAT32) != dtype:
        return False
    before = next((r for r in previous.get("rows", []) if r.get("name") == row["name"]), None)
    if not before or before.get("status") != "ok" or before.get("probe_revision") != revision:
        return False
    row.update({k: before.get(k) for k in CARRIED}, carried_over=True)
    return True


CARRIED = ("value", "low", "high", "n", "ece", "partial_length", "partial_low", "partial_high", "status", "evaluated_at", "probe_revision", "dtype")
"""What a re-evaluation computes: the columns a carried-over row takes from the previous leaderboard (and the app from a regenerated row)."""


def _entry_row(entry: ProbeEntry) -> dict:
    """A table row with what the manifest records about a probe (its metric at training time)."""
    m, partial = entry.metric, entry.partial_length
    return {"name": entry.name, "model": entry.model, "dataset": entry.dataset, "label": entry.label, "task": entry.task,
            "probe_type": entry.probe_type, "layer": entry.layer, "position": entry.position, "metric": m.get("name"),
            "recorded_value": m.get("value"), **{f"baseline_{kind}": value for kind, value in entry.baselines.items()},
            "partial_length": partial.get("value"), "partial_low": partial.get("low"), "partial_high": partial.get("high"), "cv_score": entry.cv_score}


def success_task_metrics(registry: Registry, table: pd.DataFrame, *, data_dir: str | None = None) -> list[dict]:
    """Per (source model, dataset, probe type) with several success labels: the mean test ROC-AUC over the labels with a bootstrap
    CI that resamples questions, and the number of test questions, from the predictions each probe saved at training (which the
    leaderboard reproduces), so models that are not installed here get them too."""
    from probes_hub.data.datasets import training_dataset
    from probes_hub.hub.reports import saved_rows
    from probes_hub.metrics import mean_auc_metric
    from probes_hub.schema.validation import validate_probe_dir

    usable = (table["task"] == "binary") & ~table["status"].astype(str).str.startswith(("failed", "broken"))
    metrics = []
    for (model, dataset_name, probe_type), group in table[usable].groupby(["model", "dataset", "probe_type"]):
        if len(group) < 2:
            continue
        folders = [registry.folder(name) for name in group["name"]]
        labels = group["label"].tolist()
        frame = training_dataset(validate_probe_dir(folders[0]).record.data, labels, data_dir=data_dir).frame  # the rows' order
        score = np.full((len(frame), len(labels)), np.nan)
        for column, folder in enumerate(folders):
            saved = saved_rows(folder)
            test = (saved["role"] == "test").to_numpy()
            score[test, column] = saved["prediction"].to_numpy()[test]
        scored = np.isfinite(score).any(axis=1)
        metric = mean_auc_metric(frame[labels].to_numpy(dtype=float)[scored], score[scored])
        metrics.append({"model": model, "dataset": dataset_name, "probe_type": probe_type, "labels": len(labels), **metric.to_dict()})
    return metrics


def task_metrics_of(leaderboard: dict | None) -> dict[tuple[str, str, str], dict]:
    """A leaderboard's success task metrics by (model, dataset, probe type), as :func:`probes_hub.matrix.model_task_cells` takes them."""
    return {(m["model"], m["dataset"], m["probe_type"]): m for m in (leaderboard or {}).get("task_metrics", [])}


def recorded_metric(entry: ProbeEntry) -> dict:
    """The test value, CI and n recorded at training (what a row shows until it is re-evaluated)."""
    m = entry.metric
    return {"value": m.get("value"), "low": m.get("low"), "high": m.get("high"), "n": m.get("n")}


def _evaluate_group(source, dataset, names, probes, revisions, rows, *, use_cache: bool, seed: int) -> None:
    """Predict every probe of one (model, dataset) group from one shared extraction, and score it on its test rows."""
    from probes_hub.apply import probe_features
    from probes_hub.data.datasets import row_roles
    from probes_hub.metrics import ece_metric, headline_metric, partial_spearman_metric

    if any(probes[n].record_.data.content_hash != dataset.content_hash for n in names):
        raise ValueError(f"{dataset.name}: the probes of this group record different data (content hashes differ)")
    tests = {name: row_roles(dataset, probes[name].record_.label.name, seed=seed)["test"] for name in names}
    scored = np.unique(np.concatenate(list(tests.values())))  # only the rows that are scored are extracted
    questions = dataset.frame["question"].to_numpy()[scored].tolist()
    features, _ = probe_features(source, {n: probes[n] for n in names}, questions, data_hash=sha256_text(dataset.content_hash, scored.tobytes()),
                                 use_cache=use_cache)
    taken: dict[bytes, object] = {}  # the labels of a dataset mostly share their test rows: copy those features once
    for name in names:
        probe = probes[name]
        label = probe.record_.label.name
        test = tests[name]
        y = dataset.frame[label].to_numpy(dtype=float)[test]
        positions = np.searchsorted(scored, test)
        test_features = taken.get(test.tobytes()) or taken.setdefault(test.tobytes(), features.take(positions))
        prediction = probe.predict(test_features)
        metric = headline_metric(probe.task, y, prediction)
        ece = ece_metric(y, prediction).value if probe.task == "binary" else None
        partial = partial_spearman_metric(y, prediction, test_features.token_counts) if probe.task == "graded" else None
        rows[name].update(status="ok", value=metric.value, low=metric.low, high=metric.high, n=metric.n, ece=ece, dtype=serving_dtype(probe, source.dtype),
                          partial_length=partial.value if partial else None, partial_low=partial.low if partial else None,
                          partial_high=partial.high if partial else None, probe_revision=revisions[name])


def _folder_revision(folder: Path) -> str:
    """sha256 (12 hex) of the probe's config and weights: changes whenever the probe does."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:12]


def add_baseline_columns(table: pd.DataFrame) -> None:
    """Each baseline's value for the same (model, dataset, label), and each probe's margin over the best one.

    A baseline row in the table (status ok) gives its value (of several for one label, the first by name); otherwise the value
    recorded in the probe's config at training stays. The one place baseline margins are computed.
    """
    ok = table[table["status"] == "ok"]
    kinds = baseline_types()
    for kind in kinds:
        column = f"baseline_{kind}"
        values = ok[ok["probe_type"] == kind].sort_values("name").set_index(["model", "dataset", "label"])["value"]
        values = values[~values.index.duplicated()]  # a second baseline for one label (an uploaded -v2): the first by name counts
        found = [values.get((m, d, lab), np.nan) for m, d, lab in zip(table["model"], table["dataset"], table["label"])]
        table[column] = pd.Series(found, index=table.index, dtype=float).fillna(pd.to_numeric(table[column], errors="coerce"))
    table["delta_over_best_baseline"] = pd.to_numeric(table["value"], errors="coerce") - table[[f"baseline_{k}" for k in kinds]].max(axis=1)


def leaderboard_table(registry: Registry, leaderboard: dict | None, *, problems: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per registry probe: the regenerated values where the leaderboard has the probe, else its recorded metric.

    Entries in ``problems`` (probes that failed to load, by name) are marked broken, with the reason.
    """
    evaluated = {row["name"]: row for row in (leaderboard or {}).get("rows", [])}
    problems = {**registry.problems, **(problems or {})}
    rows = []
    for entry in registry.list():
        row = _entry_row(entry)
        regenerated = evaluated.get(entry.name)
        if regenerated and regenerated.get("status") == "ok":
            row.update({k: regenerated.get(k) for k in CARRIED})
        else:
            row.update(recorded_metric(entry), status=(regenerated or {}).get("status") or RECORDED, error=(regenerated or {}).get("error", ""))
            if row["status"] == "failed":
                row["status"] = "failed to re-evaluate; showing the value recorded at training"
        if entry.name in problems:
            row.update(status="broken: not used by the app", error=problems[entry.name])
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMN_NAMES)
    scored = table.assign(status=np.where(table["value"].notna(), "ok", "none"))  # every row with a value can serve as a baseline
    add_baseline_columns(scored)
    derived = [name for name in COLUMN_NAMES if name.startswith("baseline_")] + ["delta_over_best_baseline"]
    table[derived] = scored[derived]
    return table


def write_leaderboard(table: pd.DataFrame, metadata: dict, out: str | Path, *, registry_root: str | Path | None = None) -> list[Path]:
    """Write the CSV, the JSON and the charts into ``out`` so that a crash never leaves a half-written leaderboard.

    Everything is written into a temp sibling of ``out`` (:func:`~probes_hub.atomic.atomic_folder`), with any other files ``out``
    holds copied along, and swapped in by one rename, under the folder's lock (one writer at a time).
    """
    from probes_hub.charts import leaderboard_charts, overview_charts

    out = Path(out)  # matrix.csv / matrix.md: the model x task view (see probes_hub.matrix)
    payload = {"schema_version": LEADERBOARD_SCHEMA_VERSION, "refreshed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
               "code_version": LIBRARY_VERSION, **metadata, "rows": json.loads(table.to_json(orient="records"))}
    with folder_lock(lock_path(out), "write leaderboard"):
        recover(out.parent, only=out.name)  # what a writer killed outright left (we hold the lock: no other writer is running)
        with atomic_folder(out) as tmp:
            table.to_csv(tmp / "leaderboard.csv", index=False)
            (tmp / "leaderboard.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
            cells = model_task_cells(table, task_metrics_of(metadata))
            matrix_table(cells).to_csv(tmp / "matrix.csv", index=False)
            (tmp / "matrix.md").write_text(matrix_markdown(cells) + "\n", encoding="utf-8")
            written = ["matrix.csv", "matrix.md"]
            for name, chart in {**leaderboard_charts(table, registry_root), **overview_charts(cells)}.items():
                (tmp / f"{name}.vl.json").write_text(chart.to_json(), encoding="utf-8")
                (tmp / f"{name}.html").write_text(chart.to_html(), encoding="utf-8")
                written += [f"{name}.vl.json", f"{name}.html"]
            for other in out.glob("*") if out.is_dir() else ():  # files of the folder that a leaderboard does not write stay
                if other.is_file() and other.name not in {*written, *FILES}:
                    shutil.copy2(other, tmp / other.name)
    return [out / name for name in [*FILES, *written]]


def recover_leaderboard(out: str | Path) -> list[str]:
    """Clean up what a leaderboard write killed outright left beside ``out`` (a temp folder, a half-done swap); returns what was done."""
    out = Path(out)
    with folder_lock(lock_path(out), "recover leaderboard"):
        return recover(out.parent, only=out.name)


MAX_FAILED_FRACTION = 0.2
"""Regeneration refuses to replace the leaderboard when more than this share of its rows failed to re-evaluate."""


class LeaderboardRefused(RuntimeError):
    """Regeneration stopped before writing anything: the inputs are unusable or too many rows failed."""


def regenerate(registry: str | None, out: str | Path, *, data_dir: str | None = None, model: str | None = None, push: str | None = None,
               use_cache: bool = True, max_failed: float = MAX_FAILED_FRACTION, full: bool = False) -> tuple[pd.DataFrame, float]:
    """Evaluate and write the leaderboard (and push it to a Hub dataset repo when ``push`` is given); returns (table, seconds).

    Rows whose probe, data and library version are unchanged since the leaderboard in ``out`` are carried over, unless ``full``.

    Raises :class:`LeaderboardRefused`, with the existing leaderboard left as it was, when the data folder or the
    registry's manifest is unusable or when more than ``max_failed`` of the rows failed.
    """
    from probes_hub.data.datasets import resolve_data_dir

    started = time.time()
    try:
        resolve_data_dir(data_dir)
    except FileNotFoundError as error:
        raise LeaderboardRefused(f"{error} Nothing was replaced.") from error
    reg = Registry(registry)
    if not reg.list() or MANIFEST_NAME in reg.problems:
        why = reg.problems.get(MANIFEST_NAME) or "it lists no probes"
        raise LeaderboardRefused(f"Registry {reg.spec} is unusable ({why}). Nothing was replaced.")
    previous = None
    if not full and (Path(out) / "leaderboard.json").exists():
        try:
            previous = read_leaderboard(Path(out))
        except LeaderboardError:  # a corrupt last leaderboard: evaluate everything
            previous = None
    table, metadata = evaluate_registry(reg, data_dir=data_dir, model=model, use_cache=use_cache, previous=previous)
    failed = table[table["status"] == "failed"]
    if len(failed) > max_failed * len(table):
        examples = "; ".join(f"{row.name}: {row.error}" for row in failed.head(3).itertuples())
        raise LeaderboardRefused(f"{len(failed)} of {len(table)} rows failed to re-evaluate (more than {max_failed:.0%}); the leaderboard "
                                 f"in {out} was not replaced. First failures: {examples}")
    unchanged = previous is not None and "task_metrics" in previous and bool(table["carried_over"].all()) \
        and sorted(r["name"] for r in previous["rows"]) == sorted(table["name"])  # the same probes, each carried over: same task metrics
    metadata.update(registry=registry or "bundled registry/", registry_generated_at=reg.manifest().generated_at,
                    task_metrics=previous["task_metrics"] if unchanged else success_task_metrics(reg, table, data_dir=data_dir))
    write_leaderboard(table, metadata, out, registry_root=reg.root if reg.is_local else None)
    if push:
        push_leaderboard(out, push)
    return table, time.time() - started


README_MARKERS = ("<!-- leaderboard-matrix:start -->", "<!-- leaderboard-matrix:end -->")
"""The README block that ``probes-hub leaderboard --readme README.md`` replaces with the matrix."""


def update_readme(readme: str | Path, matrix: str) -> None:
    """Replace the text between :data:`README_MARKERS` in ``readme`` with ``matrix`` (atomically); a README without them is an error."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} block to put the leaderboard matrix in.")
    head, rest = text.split(start, 1)
    atomic_write_text(path, f"{head}{start}\n{matrix}\n{end}{rest.split(end, 1)[1]}")


def push_leaderboard(out: str | Path, repo_id: str) -> str:
    """Upload leaderboard files to a Hub dataset repo (created if needed) in one commit; returns the commit id."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(out), allow_patterns=["*.csv", "*.json", "*.html"],
                             commit_message="Refresh leaderboard")
    return info.oid


def is_local_source(source: str | Path) -> bool:
    """A leaderboard source is a local folder unless it looks like a Hub dataset repo id and no such folder exists."""
    return not is_hub_id(source)


class LeaderboardError(RuntimeError):
    """A leaderboard.json that exists but cannot be used (not JSON, or not a leaderboard's shape)."""


def read_leaderboard(source: str | Path) -> dict:
    """A leaderboard.json from a local folder or a Hub dataset repo id; FileNotFoundError when there is none, LeaderboardError when corrupt."""
    if is_local_source(source):
        path = Path(source) / "leaderboard.json"
    else:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(str(source), "leaderboard.json", repo_type="dataset"))
    from probes_hub.schema.validation import ProbeValidationError, read_json

    try:
        data = read_json(path)
    except ProbeValidationError as error:
        raise LeaderboardError(f"{path.name} is corrupt ({error})") from error
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) and isinstance(row.get("name"), str) for row in rows):
        raise LeaderboardError(f"{path.name} is corrupt: expected an object whose 'rows' is a list of rows with a 'name'")
    return data


def leaderboard_version(source: str | Path) -> str | None:
    """A cheap token that changes whenever the leaderboard does: the file's mtime (local) or its etag (Hub); None if absent."""
    if is_local_source(source):
        path = Path(source) / "leaderboard.json"
        return str(path.stat().st_mtime_ns) if path.exists() else None
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        return get_hf_file_metadata(hf_hub_url(str(source), "leaderboard.json", repo_type="dataset")).etag
    except Exception:  # offline or no file yet: nothing to refresh from
        return None
