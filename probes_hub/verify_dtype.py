"""``probes-hub verify-dtype``: read every activation probe of a registry on its own test rows in its own precision and in
another, and record how far the readings moved (a :class:`~probes_hub.schema.records.PrecisionCheck` in the probe's
config and card). Only a probe whose check passed is read in the other precision (:func:`probes_hub.probes.serving_dtype`).

The two readings come from one model: the other precision is a converted copy of the weights the probe was trained on,
as the app's model worker and ``--dtype`` load them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from probes_hub.apply import read_probes, source_for_probe
from probes_hub.cache import sha256_text
from probes_hub.constants import REPORTS_DIR
from probes_hub.extract.precision import fingerprint_dtype, use_dtype
from probes_hub.hub.registry import Registry, write_index
from probes_hub.hub.upgrade import current_reports
from probes_hub.metrics import headline_metric
from probes_hub.probes import Probe
from probes_hub.progress import progress_bar
from probes_hub.schema.records import PrecisionCheck


def verify_registry(registry: Registry, dtype: str, *, model: str | None = None, data_dir: str | None = None,
                    use_cache: bool = True) -> dict[str, PrecisionCheck]:
    """Check every activation probe of a local registry in ``dtype``, write each check into its folder and re-index; the checks by name.

    ``model``: the model to read (default: the one each probe group records). Probes already in ``dtype`` and probes that read
    no activations are left as they are (nothing to check).
    """
    from probes_hub.data.datasets import row_roles, training_dataset

    if not registry.is_local:
        raise ValueError(f"verify-dtype writes into probe folders: pull {registry.spec} into a local folder first "
                         "(probes-hub pull --registry REPO --out FOLDER), verify it there, then push it.")
    with registry.reading():
        loaded = registry.load_all()
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, probe in loaded.probes.items():
        own = fingerprint_dtype(probe.fingerprint or "")
        if probe.reads_activations and own is not None and own != dtype:
            data = probe.record_.data
            groups[(probe.fingerprint, data.dataset, data.limit, data.seed)].append(name)
    checks: dict[str, PrecisionCheck] = {}
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    for (fingerprint, _, _, seed), names in progress_bar(sorted(groups.items(), key=lambda kv: kv[0][1:3]), desc=f"verify {dtype}", unit="group"):
        probes = {name: loaded.probes[name] for name in names}
        first = probes[names[0]]
        dataset = training_dataset(first.record_.data, sorted({p.record_.label.name for p in probes.values()}), data_dir=data_dir)
        tests = {name: row_roles(dataset, probe.record_.label.name, seed=seed)["test"] for name, probe in probes.items()}
        scored = np.unique(np.concatenate(list(tests.values())))
        questions = dataset.frame["question"].to_numpy()[scored].tolist()
        data_hash = sha256_text(dataset.content_hash, scored.tobytes())
        with use_dtype(fingerprint_dtype(fingerprint)):
            own_source = source_for_probe(first, model)
        readings = {}
        for source in (own_source, own_source.in_dtype(dtype)):
            readings[source.dtype] = read_probes(source, probes, questions, data_hash=data_hash, use_cache=use_cache, own_dtype=False)
        for name, probe in probes.items():
            rows = np.searchsorted(scored, tests[name])
            y = dataset.frame[probe.record_.label.name].to_numpy(dtype=float)[tests[name]]
            own, other = (readings[d][name].prediction[rows] for d in (own_source.dtype, dtype))
            checks[name] = measure(probe, y, own, other, own_dtype=own_source.dtype, dtype=dtype, checked_at=checked_at)
    _write_checks(registry, loaded.probes, checks, data_dir)
    return checks


def measure(probe: Probe, y: np.ndarray, own: np.ndarray, other: np.ndarray, *, own_dtype: str, dtype: str, checked_at: str) -> PrecisionCheck:
    """The check of one probe from its test labels and its readings in its own precision and in ``dtype``."""
    from scipy.stats import spearmanr

    agreement = float(spearmanr(own, other).statistic) if np.ptp(own) > 0 and np.ptp(other) > 0 else float(np.array_equal(own, other))
    return PrecisionCheck(dtype, own_dtype, len(y), agreement, float(np.max(np.abs(own - other))) if len(y) else 0.0,
                          headline_metric(probe.task, y, own), headline_metric(probe.task, y, other), checked_at)


def _write_checks(registry: Registry, probes: dict[str, Probe], checks: dict[str, PrecisionCheck], data_dir: str | None) -> None:
    """Each checked probe saved again with its check (each folder swapped in whole), then the manifest and card, under the lock."""
    with registry.writing("verify-dtype"):
        for name, check in checks.items():
            probe, folder = probes[name], registry.folder(name)
            probe.record_ = replace(probe.record_, precision={**probe.record_.precision, check.dtype: check})
            probe.save_pretrained(folder, reports=current_reports(probe, Path(folder) / REPORTS_DIR, data_dir))
        write_index(registry.root)
