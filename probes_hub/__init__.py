"""probes_hub: difficulty and success probes on an LLM's pre-generation activations.

>>> import probes_hub
>>> probes_hub.predict(["What is 7 + 5?"])  # doctest: +SKIP

The public names are imported on first use, so ``import probes_hub.paths`` (the app does it before it
starts its model worker) stays cheap.
"""

from __future__ import annotations

import importlib

from probes_hub.constants import LIBRARY_VERSION as __version__

_EXPORTS = {
    "predict": "probes_hub.api",
    "Registry": "probes_hub.hub.registry",
    "Probe": "probes_hub.probes",
    "LinearProbe": "probes_hub.probes",
    "SharedDirectionProbe": "probes_hub.probes",
    "LengthProbe": "probes_hub.probes",
    "TfidfProbe": "probes_hub.probes",
    "load_probe": "probes_hub.probes",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'probes_hub' has no attribute {name!r}")
