"""One progress-bar factory so every long loop looks and can be silenced the same way."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm.auto import tqdm

from probes_hub.config import setting


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str = "q", disable: bool = False) -> tqdm:
    """A tqdm bar with ETA; disabled when ``disable`` or ``PROBES_HUB_NO_PROGRESS=1``."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable or setting("PROBES_HUB_NO_PROGRESS"), dynamic_ncols=True)
