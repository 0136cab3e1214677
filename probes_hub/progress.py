"""One progress-bar factory so every long loop looks and can be silenced the same way."""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_bar(*, total: int, desc: str, disable: bool = False) -> tqdm:
    """A tqdm bar with ETA; disabled when ``disable`` or ``PROBES_HUB_NO_PROGRESS=1``."""
    return tqdm(total=total, desc=desc, unit="q", disable=disable or os.environ.get("PROBES_HUB_NO_PROGRESS") == "1", dynamic_ncols=True)
