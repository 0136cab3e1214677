"""Accept a probe upload (a zip, or the folder's files), validate it completely, evaluate it, then add it to the registry.

Nothing touches the registry until every check passed; the registry push itself is atomic (local: temp
folder + rename; Hub: one commit), so a rejected upload leaves the registry byte-identical.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from probes_hub.apply import check_probe_matches_model, predict_probes
from probes_hub.constants import ALLOWED_REPORT_SUFFIXES, CARD_NAME, CONFIG_NAME, MAX_PROBE_FILE_BYTES, REPORTS_DIR, WEIGHTS_NAME
from probes_hub.data.datasets import DataChangedError, row_roles, training_dataset
from probes_hub.extract.feature_source import FeatureSource
from probes_hub.hub.naming import probe_folder_name
from probes_hub.hub.registry import Registry
from probes_hub.hub.validation import ProbeValidationError
from probes_hub.metrics import headline_metric
from probes_hub.probes import Probe

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
ROOT_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)


@dataclass
class UploadResult:
    name: str
    message: str


def stage_upload(paths: list[str | Path], workdir: Path) -> Path:
    """Lay the uploaded files out as one probe folder under ``workdir``; reject unsafe names, sizes and layouts."""
    paths = [Path(p) for p in paths or []]
    if not paths:
        raise ProbeValidationError("No file uploaded: give a .zip of a probe folder, or its config.json and model.safetensors.")
    total = sum(p.stat().st_size for p in paths)
    if total > MAX_UPLOAD_BYTES:
        raise ProbeValidationError(f"Upload is {total / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
    folder = workdir / "probe"
    folder.mkdir()
    if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
        _extract_zip(paths[0], folder)
    else:
        for path in paths:
            name = path.name
            if name in ROOT_FILES:
                shutil.copyfile(path, folder / name)
            elif path.suffix in ALLOWED_REPORT_SUFFIXES:
                (folder / REPORTS_DIR).mkdir(exist_ok=True)
                shutil.copyfile(path, folder / REPORTS_DIR / name)
            else:
                raise ProbeValidationError(f"'{name}' is not part of a probe folder (allowed: {', '.join(ROOT_FILES)}, reports as .json/.csv). "
                                           "Pickle, .pt and other executable formats are refused.")
    return folder


def _extract_zip(archive: Path, folder: Path) -> None:
    """Extract a zip safely: no absolute or parent paths, no links, bounded sizes; one optional top folder is stripped."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_UPLOAD_BYTES:
                raise ProbeValidationError(f"The zip expands beyond {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
            names = [PurePosixPath(m.filename) for m in members]
            for member, name in zip(members, names):
                if name.is_absolute() or ".." in name.parts or (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ProbeValidationError(f"Unsafe path in zip: '{member.filename}'.")
                if member.file_size > MAX_PROBE_FILE_BYTES:
                    raise ProbeValidationError(f"'{member.filename}' is larger than {MAX_PROBE_FILE_BYTES / 1e6:.0f} MB.")
            tops = {n.parts[0] for n in names if len(n.parts) > 1}
            strip = len(tops) == 1 and not any(len(n.parts) == 1 for n in names)
            for member, name in zip(members, names):
                relative = PurePosixPath(*name.parts[1:]) if strip else name
                target = folder.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(member))
    except zipfile.BadZipFile as error:
        raise ProbeValidationError(f"'{archive.name}' is not a readable zip file ({error}).") from error


def evaluate_upload(probe: Probe, source: FeatureSource) -> str:
    """Test-split metric of the uploaded probe when its dataset is available here, as a sentence."""
    data, label = probe.record_.data, probe.record_.label.name
    try:
        dataset = training_dataset(data, [label])
    except DataChangedError:
        return "Not re-evaluated: the dataset here differs from the one it was trained on."
    except (FileNotFoundError, ValueError, KeyError) as error:
        return f"Not re-evaluated: its dataset is not available here ({error})."
    test = row_roles(dataset, label, seed=data.seed)["test"]
    prediction = predict_probes(source, {"upload": probe}, dataset.frame["question"].tolist(), data_hash=dataset.content_hash, use_cache=True)["upload"]
    metric = headline_metric(probe.task, dataset.frame[label].to_numpy(dtype=float)[test], prediction[test])
    recorded = probe.record_.test_metric
    return f"Re-evaluated on the test split here: {metric} (recorded: {recorded.value if recorded else float('nan'):.3f})."


def accept_upload(paths: list[str | Path], registry: Registry, source: FeatureSource) -> UploadResult:
    """Validate (files, schema, shapes vs the model's hidden size, model match), evaluate, and push to ``registry``."""
    with tempfile.TemporaryDirectory(prefix="probe-upload-") as tmp:
        staged = stage_upload(paths, Path(tmp))
        probe = Probe.from_pretrained(staged, hidden_size=source.hidden_size)
        check_probe_matches_model(probe, source, where="The uploaded probe")
        record = probe.record_
        model = record.model.display_id if record.model else source.display_id
        name = probe_folder_name(model, record.data.dataset, record.label.name, probe.probe_type)
        folder = Path(tmp) / name
        staged.rename(folder)
        evaluation = evaluate_upload(probe, source)
        registry.push([folder], commit_message=f"Upload probe {name}")
    return UploadResult(name, f"Added **{name}** to {registry.spec}. {evaluation}")
