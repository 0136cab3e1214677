"""Accept a probe upload (a zip, or the folder's files): a pure check in a scratch folder, then one atomic add.

The check (:func:`check_upload`) reads only the uploaded bytes and the built-in datasets: allowed files with
bounded counts and sizes, safe names, the config's schema, types and meaning, safetensors weights of the
declared dtype and shape, a probe for the model this app serves, a built-in dataset named (never a path).
It then re-evaluates the probe on a fixed seeded subset of that dataset's test split, within a time limit,
on the evaluation lane's model (so predictions never wait for it). The stored folder is re-saved from the
validated probe with the re-evaluated metrics only; the uploaded card, reports and metrics are dropped.
Nothing touches the registry until all of that passed; the add never replaces a probe (a taken name gets
the next free ``-vN`` suffix) and is atomic (local: temp folder + rename, then the manifest; Hub: one commit).

Before any of it, the uploader is identified (:mod:`space_app.upload_access`) and held to the quotas; every attempt,
accepted or refused, is a line in the registry's audit log (:mod:`probes_hub.hub.audit`). The name is chosen, the
quota checked again and the probe added under the registry's lock, so concurrent uploads never lose one another.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np

from probes_hub.apply import check_probe_matches_model, probe_features
from probes_hub.constants import ALLOWED_REPORT_SUFFIXES, CARD_NAME, CONFIG_NAME, REPORTS_DIR, WEIGHTS_NAME
from probes_hub.data.datasets import BUILTIN, DataChangedError, row_roles, training_dataset
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.hub.audit import ACCEPTED, REFUSED, AuditEntry, AuditLog, UploadQuota, file_digests, now_iso
from probes_hub.hub.registry import Registry
from probes_hub.metrics import headline_metric, partial_spearman_metric
from probes_hub.probes import Probe
from probes_hub.schema.naming import probe_folder_name
from probes_hub.schema.records import GRADED
from probes_hub.schema.validation import ProbeValidationError

from .upload_access import UploadAccess

MAX_UPLOAD_BYTES = 32 * 1024 * 1024
"""All uploaded files (or the zip's expanded members) together."""
MAX_FILES = 12
FILE_LIMITS = {CONFIG_NAME: 1024 * 1024, CARD_NAME: 256 * 1024, WEIGHTS_NAME: 16 * 1024 * 1024}
"""Largest accepted size per root file."""
MAX_REPORTS = 8
MAX_REPORT_BYTES = 2 * 1024 * 1024
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""File names accepted in an upload: plain ASCII, no path separators, no leading dot."""
EVALUATION_ROWS = 200
"""Re-evaluation reads at most this many test questions (a subset fixed by the probe's seed)."""
EVALUATION_SECONDS = 120.0
"""Re-evaluation gives up (and the upload is refused) after this long."""
EVALUATION_BATCH = 32
MAX_VERSIONS = 99


@dataclass(frozen=True)
class UploadResult:
    name: str
    message: str


@dataclass(frozen=True)
class CheckedUpload:
    """A probe that passed every check, re-saved with its re-evaluated metrics, ready to add under ``name`` (or its next free version)."""

    folder: Path
    name: str
    summary: str


@dataclass(frozen=True)
class UploadPolicy:
    """Who may upload (:class:`UploadAccess`) and how much (:class:`UploadQuota`)."""

    access: UploadAccess
    quota: UploadQuota

    @classmethod
    def configured(cls) -> UploadPolicy:
        return cls(UploadAccess.configured(), UploadQuota.configured())


def stage_upload(paths: list[str | Path], workdir: Path) -> Path:
    """Lay the uploaded files out as one probe folder under ``workdir``; refuse unsafe names, counts, sizes and layouts."""
    paths = [Path(p) for p in paths or []]
    if not paths:
        raise ProbeValidationError("No file uploaded: give a .zip of a probe folder, or its config.json and model.safetensors.")
    folder = workdir / "probe"
    folder.mkdir()
    if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
        _extract_zip(paths[0], folder)
    else:
        relatives = [_loose_file_place(path.name) for path in paths]
        _check_layout([(relative, path.stat().st_size) for relative, path in zip(relatives, paths)])
        for relative, path in zip(relatives, paths):
            target = folder / relative
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(path, target)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise ProbeValidationError(f"The upload has no {name}: a probe folder needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                                       "(as written by save_pretrained or 'probes-hub train').")
    return folder


def _loose_file_place(name: str) -> str:
    """Where an uploaded loose file goes in the probe folder: reports (.json/.csv/.safetensors other than the probe's own files)
    under ``reports/``, everything else at the root (where the layout check accepts only the probe's files)."""
    own = name in FILE_LIMITS or name == "manifest.json"
    return f"{REPORTS_DIR}/{name}" if not own and PurePosixPath(name).suffix in ALLOWED_REPORT_SUFFIXES else name


def _check_layout(files: list[tuple[str, int]]) -> None:
    """Every file (relative name, size) must be a probe file or a report, with a safe name and within its size limit."""
    if len(files) > MAX_FILES:
        raise ProbeValidationError(f"The upload holds {len(files)} files; a probe folder has at most {MAX_FILES}.")
    total = sum(size for _, size in files)
    if total > MAX_UPLOAD_BYTES:
        raise ProbeValidationError(f"The upload is {total / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
    reports = 0
    for name, size in files:
        parts = PurePosixPath(name).parts
        if not all(SAFE_NAME.match(part) for part in parts):
            raise ProbeValidationError(f"Unsafe file name {name[:100]!r}: use plain ASCII letters, digits and ._- only.")
        if name == "manifest.json":
            raise ProbeValidationError("manifest.json is written by the registry, never uploaded: upload one probe folder without it.")
        if name in FILE_LIMITS:
            limit = FILE_LIMITS[name]
        elif len(parts) == 2 and parts[0] == REPORTS_DIR and PurePosixPath(name).suffix in ALLOWED_REPORT_SUFFIXES:
            reports += 1
            limit = MAX_REPORT_BYTES
        else:
            raise ProbeValidationError(f"'{name}' is not part of a probe folder (allowed: {', '.join(FILE_LIMITS)}, and reports/*.json|csv|safetensors). "
                                       "Pickle, .pt and other executable formats are refused.")
        if size > limit:
            raise ProbeValidationError(f"'{name}' is {size / 1e6:.2f} MB; the limit for it is {limit / 1e6:.2f} MB.")
    if reports > MAX_REPORTS:
        raise ProbeValidationError(f"The upload holds {reports} report files; at most {MAX_REPORTS} are accepted.")


def _extract_zip(archive: Path, folder: Path) -> None:
    """Extract a zip safely: no absolute or parent paths, no links, bounded counts and sizes; one optional top folder is stripped."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if not members:
                raise ProbeValidationError(f"'{archive.name}' is an empty zip: zip the probe folder (config.json, model.safetensors, ...).")
            if len(members) > MAX_FILES:
                raise ProbeValidationError(f"The zip holds {len(members)} files; a probe folder has at most {MAX_FILES}.")
            names = [PurePosixPath(m.filename) for m in members]
            for member, name in zip(members, names):
                if name.is_absolute() or ".." in name.parts or (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ProbeValidationError(f"Unsafe path in zip: {member.filename[:100]!r}.")
            tops = {n.parts[0] for n in names if len(n.parts) > 1}
            strip = len(tops) == 1 and not any(len(n.parts) == 1 for n in names)
            relatives = [PurePosixPath(*name.parts[1:]) if strip else name for name in names]
            _check_layout([(relative.as_posix(), member.file_size) for member, relative in zip(members, relatives)])
            for member, relative in zip(members, relatives):
                target = folder.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as source, open(target, "wb") as out:  # zipfile stops at the declared (checked) size
                    shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
        raise ProbeValidationError(f"'{archive.name}' is not a readable zip file ({error}).") from error


def check_upload(paths: list[str | Path], workdir: Path, source: FeatureSource, evaluation_source: FeatureSource | None = None) -> CheckedUpload:
    """Every check on an upload, in ``workdir`` only; returns the re-saved folder to add. Raises ProbeValidationError (or ValueError)."""
    staged = stage_upload(paths, workdir)
    probe = Probe.from_pretrained(staged, hidden_size=source.hidden_size)
    record = probe.record_ = replace(probe.record_, precision={})  # a claimed precision check is not trusted: verify-dtype measures here
    if record.data.dataset not in BUILTIN:
        raise ProbeValidationError(f"The probe was trained on '{record.data.dataset}', not on a built-in dataset ({', '.join(BUILTIN)}): "
                                   "uploads must name one, so that they can be re-evaluated here.")
    if record.data.source not in ("", record.data.dataset):
        raise ProbeValidationError(f"data.source must be empty or the dataset's name '{record.data.dataset}'; paths are not accepted.")
    if record.model is not None and record.model.display_id != source.display_id:
        raise ProbeValidationError(f"The probe is for {record.model.display_id}; this registry serves {source.display_id}.")
    check_probe_matches_model(probe, source, where="The uploaded probe")
    metrics = reevaluate(probe, evaluation_source or source)
    probe.record_ = replace(record, metrics=metrics, data=replace(record.data, source=record.data.dataset))
    probe.selection_ = replace(probe.selection_, cv_metric=None, cv_score=None)  # unverifiable here: the app never ranks by an uploaded score
    model = record.model.display_id if record.model else source.display_id
    name = probe_folder_name(model, record.data.dataset, record.label.name, probe.probe_type)
    folder = probe.save_pretrained(workdir / "checked" / name)
    test = metrics["test"]
    return CheckedUpload(folder, name, f"Re-evaluated here on {test.n} test questions: {test}.")


def reevaluate(probe: Probe, source: FeatureSource) -> dict:
    """The probe's test metric (and, for graded labels, its partial Spearman given length) on a seeded subset of its dataset's test split."""
    data, label = probe.record_.data, probe.record_.label
    try:
        dataset = training_dataset(replace(data, source=data.dataset), [label.name])
    except DataChangedError as error:
        raise ProbeValidationError(f"Cannot re-evaluate: {error}") from error
    except (FileNotFoundError, OSError) as error:
        raise ProbeValidationError(f"Cannot re-evaluate: dataset '{data.dataset}' is not available on this server ({error}).") from error
    if label.name not in dataset.labels:
        raise ProbeValidationError(f"Dataset '{data.dataset}' has no label '{label.name}' (its labels: {', '.join(dataset.labels)}).")
    if dataset.labels[label.name] != label.task:
        raise ProbeValidationError(f"Label '{label.name}' of '{data.dataset}' is {dataset.labels[label.name]}, but the probe says {label.task}.")
    test = row_roles(dataset, label.name, seed=data.seed)["test"]
    rows = np.sort(np.random.default_rng(data.seed).permutation(test)[:EVALUATION_ROWS])
    questions = dataset.frame["question"].to_numpy()[rows].tolist()
    y = dataset.frame[label.name].to_numpy(dtype=float)[rows]
    deadline = time.monotonic() + EVALUATION_SECONDS
    predictions, lengths = [], []
    for start in range(0, len(questions), EVALUATION_BATCH):
        if time.monotonic() > deadline:
            raise ProbeValidationError(f"Re-evaluation took longer than {EVALUATION_SECONDS:.0f} s; the upload was not added. Try again later.")
        features, _ = probe_features(source, {"upload": probe}, questions[start:start + EVALUATION_BATCH])
        predictions.append(probe.predict(features))
        lengths.append(features.token_counts)
    prediction = np.concatenate(predictions)
    if not np.all(np.isfinite(prediction)):
        raise ProbeValidationError("The probe's predictions on this dataset are not finite numbers; check its weights.")
    metrics = {"test": headline_metric(label.task, y, prediction)}
    if label.task == GRADED:
        metrics["test_partial_length"] = partial_spearman_metric(y, prediction, np.concatenate(lengths))
    return metrics


def free_name(registry: Registry, name: str) -> str:
    """``name``, or the first ``name-vN`` the registry does not hold yet: an upload never replaces a probe."""
    taken = set(registry.manifest(refresh=True).entries)
    for candidate in (name, *(f"{name}-v{n}" for n in range(2, MAX_VERSIONS + 1))):
        if candidate not in taken and not (registry.is_local and (registry.root / candidate).exists()):
            return candidate
    raise ProbeValidationError(f"The registry already holds {MAX_VERSIONS} versions of {name}; delete old ones first.")


def accept_upload(paths: list[str | Path], registry: Registry, source: FeatureSource, evaluation_source: FeatureSource | None = None, *,
                  policy: UploadPolicy, signed_in: str | None = None, token: str | None = None) -> UploadResult:
    """Identify the uploader, hold them to the quota, check the upload completely (see :func:`check_upload`), then add it to
    ``registry`` in one atomic step; the attempt is logged either way.

    Raises:
        ValueError: not signed in or not allowed, over a quota, or the upload is invalid (ProbeValidationError); nothing was added.
    """
    log = AuditLog.of(registry)
    digests, size = file_digests(paths)
    user = ""

    def record(outcome: str, name: str = "", reason: str = "") -> None:
        with registry.writing("audit"):
            log.append(AuditEntry(now_iso(), user, "upload", outcome, name, reason[:500], digests, size))

    try:
        user = policy.access.identify(signed_in, token)
        policy.quota.check(user, log.entries(), size)
        with tempfile.TemporaryDirectory(prefix="probe-upload-") as tmp:
            checked = check_upload(paths, Path(tmp), source, evaluation_source)
            with registry.writing(f"upload by {user}"):
                policy.quota.check(user, log.entries(), size)
                name = free_name(registry, checked.name)
                folder = shutil.copytree(checked.folder, Path(tmp) / "named" / name)  # a folder's name is its probe's name
                registry.push([folder], commit_message=f"Upload probe {name} by {user}", replace=False)
                try:
                    record(ACCEPTED, name)
                except OSError:  # an upload the log cannot record is taken back out
                    registry.remove(name, message=f"Undo upload {name}: the audit log could not be written")
                    raise
    except Exception as error:  # every failed attempt is logged (best effort: a log that cannot be written must not hide the error)
        with contextlib.suppress(OSError):
            record(REFUSED, reason=str(error) or type(error).__name__)
        raise
    return UploadResult(name, f"Added **{name}** to the registry as {user}. {checked.summary} "
                              "Its uploaded metrics, card and reports were not kept; the card was regenerated.")
