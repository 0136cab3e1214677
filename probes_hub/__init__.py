"""probes_hub: difficulty and success probes on an LLM's pre-generation activations.

>>> import probes_hub
>>> probes_hub.predict(["What is 7 + 5?"])  # doctest: +SKIP

The public names are imported on first use, so ``import probes_hub.paths`` (the app does it before it
starts its model worker) stays cheap.
"""

from __future__ import annotations

import importlib

from probes_hub.constants import LIBRARY_VERSION as __version__

_EXPORTS = {"predict": "probes_hub.api", "Registry": "probes_hub.hub.registry", "Probe": "probes_hub.probes", "load_probe": "probes_hub.probes"}
"""Public names by module; every probe class (``LinearProbe``, ``MultiLayerProbe``, ...) is public too, from ``probes_hub.probes``."""
__all__ = ["__version__", *_EXPORTS]  # plus each probe class's name (resolved on first use, so listing them here would import torch)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name.endswith("Probe"):
        probes = importlib.import_module("probes_hub.probes")
        if name in {cls.__name__ for cls in probes.PROBE_TYPES.values()}:
            return getattr(probes, name)
    raise AttributeError(f"module 'probes_hub' has no attribute {name!r}")
