"""Safe, bounded, unique folder names for probes, derived from model / dataset / label / probe type."""

from __future__ import annotations

import re

from probes_hub.cache import sha256_text

MAX_NAME_LENGTH = 96


def slug(text: str) -> str:
    """Lowercase ``[a-z0-9._-]`` only; other runs of characters become one '-'."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9._-]+", "-", text.lower())).strip("-.") or "x"


def probe_folder_name(model: str, dataset: str, label: str, probe_type: str) -> str:
    """``model--dataset--label--probe``, shortened with a hash suffix when longer than the limit."""
    name = "--".join(slug(part) for part in (model.split("/")[-1], dataset, label, probe_type))
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = sha256_text(model, dataset, label, probe_type)[:8]
    return f"{name[: MAX_NAME_LENGTH - 9]}-{digest}"
