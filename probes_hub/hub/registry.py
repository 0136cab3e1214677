"""Probe registries: find probes by name or filters (local folder or Hub repo, one code path) and load them.

Only the registry resolves names and filters; :meth:`Probe.from_pretrained` loads one folder.

>>> registry = Registry("registry")  # doctest: +SKIP
>>> [e.name for e in registry.list(dataset="math500")]  # doctest: +SKIP
>>> probe = registry.load(dataset="math500", label="level", probe_type="linear")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probes_hub.constants import CONFIG_NAME
from probes_hub.hub.manifest import ProbeEntry
from probes_hub.hub.storage import RegistryStore, write_index
from probes_hub.probes.base import Probe
from probes_hub.schema.naming import HUB_REPO_ID
from probes_hub.schema.validation import ProbeValidationError

__all__ = ["HUB_REPO_ID", "LoadReport", "Registry", "list_probes", "write_index"]


@dataclass
class LoadReport:
    """Probes that loaded, by name, and the reason each of the others did not."""

    probes: dict[str, Probe]
    problems: dict[str, str]


class Registry(RegistryStore):
    """A probe registry given as a local folder path or a Hub repo id (``org/name``)."""

    def load(self, name: str | None = None, *, hidden_size: int | None = None, **filters) -> Probe:
        """Load one probe, by name or by filters that match exactly one, validated (see :meth:`Probe.from_pretrained`)."""
        return Probe.from_pretrained(self.folder(self.entry(name, **filters).name), hidden_size=hidden_size)

    def load_all(self, *, hidden_size: int | None = None, names: list[str] | None = None, **filters) -> LoadReport:
        """Load every matching probe (or the entries called ``names``); a broken one is reported in ``problems`` and the rest still load."""
        entries = [self.entry(name) for name in names] if names is not None else self.list(**filters)
        root = self._fetch([e.folder for e in entries]) if entries else None
        report = LoadReport({}, {})
        for entry in entries:
            try:
                if not (root / entry.folder / CONFIG_NAME).exists():
                    raise ProbeValidationError(f"the manifest lists it but folder '{entry.folder}' is missing")
                report.probes[entry.name] = Probe.from_pretrained(root / entry.folder, hidden_size=hidden_size)
            except (ProbeValidationError, ValueError, OSError) as error:
                report.problems[entry.name] = str(error)
        return report


def list_probes(registry: str | Path | None = None, **filters) -> list[ProbeEntry]:
    """Entries of ``registry`` (default: the bundled one) matching the filters."""
    return Registry(registry).list(**filters)
