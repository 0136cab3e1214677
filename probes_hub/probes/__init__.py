"""Probe estimators, one module per probe type: each type registers itself in ``PROBE_TYPES`` when defined.

Every module in this folder is imported here, so adding a probe type is one new file (plus its tests).
"""

import importlib
import pkgutil

from .base import PROBE_TYPES, Probe, baseline_types, load_probe, probe_matches, read_config, serving_dtype

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
globals().update({cls.__name__: cls for cls in PROBE_TYPES.values()})  # every registered type by its class name (LinearProbe, ...)

__all__ = ["PROBE_TYPES", "Probe", "baseline_types", "load_probe", "probe_matches", "read_config", "serving_dtype", *(cls.__name__ for cls in PROBE_TYPES.values())]
