"""A registry's index: ``manifest.json`` (one entry per probe folder) and the generated registry card.

Both are derived from the probe folders' own ``config.json`` files, never written by hand, so the index
cannot disagree with the probes it lists.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from probes_hub.constants import CONFIG_NAME
from probes_hub.errors import UnknownName
from probes_hub.schema.records import ProbeConfig
from probes_hub.schema.validation import ProbeValidationError, validate_probe_dir

MANIFEST_SCHEMA_VERSION = 1
"""Version of the manifest format (independent of the probe config's)."""
MANIFEST_NAME = "manifest.json"
REGISTRY_CARD_NAME = "README.md"
FILTER_FIELDS = ("model", "dataset", "label", "probe_type")



@dataclass(frozen=True)
class ProbeEntry:
    """What the manifest says about one probe: enough to list, filter and rank it without loading weights."""

    name: str
    folder: str
    model: str
    fingerprint: str
    hidden_size: int
    dataset: str
    label: str
    task: str
    probe_type: str
    layer: int | None
    position: int | None
    metric: dict
    baselines: dict = field(default_factory=dict)
    created_at: str = ""
    partial_length: dict = field(default_factory=dict)
    """Graded probes: the test partial Spearman given prompt length (value, low, high, n): what the reading tells beyond length."""
    cv_metric: str | None = None
    cv_score: float | None = None
    """The selection's score on the training rows (CV or validation split): what the app ranks difficulty probes by, never the test metric."""

    @classmethod
    def from_config(cls, folder: str, config: ProbeConfig) -> ProbeEntry:
        record = config.record
        test = record.test_metric
        return cls(name=folder, folder=folder, model=record.model.display_id if record.model else "", fingerprint=record.model.fingerprint if record.model else "",
                   hidden_size=record.model.hidden_size if record.model else 0, dataset=record.data.dataset, label=record.label.name,
                   task=record.label.task, probe_type=config.probe_type, layer=config.selection.layer, position=config.selection.position,
                   metric=test.to_dict() if test else {}, baselines=record.baselines(), created_at=record.created_at,
                   partial_length=record.metrics["test_partial_length"].to_dict() if "test_partial_length" in record.metrics else {},
                   cv_metric=config.selection.cv_metric, cv_score=config.selection.cv_score)

    @classmethod
    def from_dict(cls, data: dict) -> ProbeEntry:
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        missing = [f for f in ("name", "folder", "model", "dataset", "label", "task", "probe_type") if f not in known]
        if missing:
            raise ProbeValidationError(f"manifest entry {data.get('name', '?')!r} lacks field(s) {missing}.")
        folder = known["folder"]
        if not isinstance(folder, str) or not folder or folder.startswith(".") or "/" in folder or "\\" in folder:
            raise ProbeValidationError(f"manifest entry {data.get('name', '?')!r} names folder {str(folder)[:100]!r}; it must be one plain folder name.")
        return cls(**{"fingerprint": "", "hidden_size": 0, "layer": None, "position": None, "metric": {}, **known})

    def matches(self, *, model: str | None = None, dataset: str | None = None, label: str | None = None, probe_type: str | None = None) -> bool:
        """Exact match on every given filter; ``model`` also matches the part after the last '/'."""
        if model is not None and model not in (self.model, self.model.split("/")[-1]):
            return False
        return all(want is None or want == have for want, have in ((dataset, self.dataset), (label, self.label), (probe_type, self.probe_type)))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Manifest:
    """Parsed ``manifest.json``: entries by name, plus when it was generated."""

    entries: dict[str, ProbeEntry]
    generated_at: str = ""
    about: str = ""

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "manifest.json") -> Manifest:
        if not isinstance(data, dict) or data.get("schema_version") != MANIFEST_SCHEMA_VERSION or not isinstance(data.get("probes"), list):
            raise ProbeValidationError(f"{where}: not a schema-version-{MANIFEST_SCHEMA_VERSION} manifest with a 'probes' list.")
        try:
            entries = [ProbeEntry.from_dict(item) for item in data["probes"]]
        except (TypeError, AttributeError, ValueError) as error:
            raise ProbeValidationError(f"{where}: an entry has the wrong shape ({error}).") from error
        return cls({e.name: e for e in entries}, data.get("generated_at", ""), str(data.get("about", "")))

    def to_dict(self) -> dict:
        return {"schema_version": MANIFEST_SCHEMA_VERSION, "generated_at": self.generated_at, "about": self.about,
                "probes": [self.entries[name].to_dict() for name in sorted(self.entries)]}

    def suggest(self, **filters) -> str:
        """For filters that match nothing: which given values are unknown, with the close known ones (a typo's likely fix)."""
        hints = []
        for key, value in filters.items():
            known = sorted({str(getattr(e, key)) for e in self.entries.values()} | ({e.model.split("/")[-1] for e in self.entries.values()} if key == "model" else set()))
            if value is not None and value not in known:
                close = difflib.get_close_matches(str(value), known, n=3, cutoff=0.5)
                hints.append(f"no {key} {value!r}" + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else f" (known: {', '.join(known[:8])})"))
        return "; ".join(hints) or "each filter value exists, but no probe has all of them together."

    def select(self, **filters) -> list[ProbeEntry]:
        """Entries matching the filters (see :meth:`ProbeEntry.matches`), sorted by name."""
        unknown = set(filters) - set(FILTER_FIELDS)
        if unknown:
            raise ValueError(f"Unknown filter(s) {sorted(unknown)}; use {FILTER_FIELDS}.")
        return [self.entries[n] for n in sorted(self.entries) if self.entries[n].matches(**filters)]

    def get(self, name: str) -> ProbeEntry:
        """The entry called ``name``; an unknown name is an error listing close matches."""
        if name in self.entries:
            return self.entries[name]
        close = difflib.get_close_matches(name, list(self.entries), n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else f" The registry has {len(self.entries)} probes; run 'list' to see them."
        raise UnknownName(f"No probe named {name!r} in this registry.{hint}")


def scan_folders(root: Path) -> tuple[Manifest, dict[str, str]]:
    """Build a manifest from the probe folders under ``root``; folders that fail validation go to ``problems``."""
    entries, problems = {}, {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / CONFIG_NAME).exists():
            continue
        try:
            entries[folder.name] = ProbeEntry.from_config(folder.name, validate_probe_dir(folder))
        except (ProbeValidationError, KeyError, TypeError) as error:
            problems[folder.name] = str(error)
    return Manifest(entries, datetime.now(UTC).isoformat(timespec="seconds")), problems


def registry_card(manifest: Manifest, *, title: str = "Difficulty probes") -> str:
    """The registry's README.md: a Hub model card whose table lists every probe (generated from the manifest)."""
    kinds = sorted({kind for entry in manifest.entries.values() for kind in entry.baselines})
    rows = ["| probe | model | dataset | label | type | layer | position | test metric [95% CI] (n) | " + " | ".join(kinds) + " |",
            "|---" * (8 + len(kinds)) + "|"]
    for entry in manifest.select():
        m = entry.metric
        metric = f"{m['name']} {m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}] ({m['n']})" if m else "n/a"
        base = [f"{entry.baselines[k]:.3f}" if k in entry.baselines else "" for k in kinds]
        rows.append(f"| `{entry.name}` | {entry.model} | {entry.dataset} | {entry.label} | {entry.probe_type} | "
                    f"{'' if entry.layer is None else entry.layer} | {'' if entry.position is None else entry.position} | {metric} | " + " | ".join(base) + " |")
    header = "---\nlibrary_name: probes_hub\ntags:\n- difficulty-probe\n---\n\n"
    body = [f"# {title}", "", manifest.about.strip(), "",
            f"{len(manifest.entries)} probes; index generated {manifest.generated_at}. Each folder holds `config.json`, "
            "`model.safetensors`, a model card and `reports/`; `manifest.json` indexes them.", "",
            "Load one with `Registry(REGISTRY).load(name)` (`from probes_hub import Registry`), or list them with `probes-hub list --registry REGISTRY`.", "",
            *rows, ""]
    return header + "\n".join(body)
