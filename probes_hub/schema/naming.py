"""Names: safe, bounded, unique folder names for probes (from model / dataset / label / probe type), and the one rule that tells
a Hub repo id from a local path."""

from __future__ import annotations

import re
from pathlib import Path

from probes_hub.cache import sha256_text

MAX_NAME_LENGTH = 96


def slug(text: str) -> str:
    """Lowercase ``[a-z0-9._-]`` only; other runs of characters become one '-'."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9._-]+", "-", text.lower())).strip("-.") or "x"


PAIR_SEPARATOR = " + "
"""Joins the display ids of two models read together (a probe on both models' activations)."""


def model_short_name(model: str) -> str:
    """A model's name without its organisation (``SmolLM2-135M-Instruct``); for a pair, both joined by '+'."""
    return "+".join(part.strip().split("/")[-1] for part in model.split(PAIR_SEPARATOR.strip()))


def probe_folder_name(model: str, dataset: str, label: str, probe_type: str) -> str:
    """``model--dataset--label--probe``, shortened with a hash suffix when longer than the limit."""
    name = "--".join(slug(part) for part in (model_short_name(model), dataset, label, probe_type))
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = sha256_text(model, dataset, label, probe_type)[:8]
    return f"{name[: MAX_NAME_LENGTH - 9]}-{digest}"


HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(spec: str | Path) -> bool:
    """The one rule for "a local path or a Hub repo id": an ``owner/name`` that is not a path here, and whose ``owner``
    is not a folder here either (``runs/typo`` with a ``runs/`` folder is a missing local path, not a repo)."""
    path = Path(spec)
    return bool(HUB_REPO_ID.match(str(spec))) and not path.exists() and not path.parent.is_dir()
