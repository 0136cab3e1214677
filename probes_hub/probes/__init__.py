"""Probe estimators, one module per probe type: each type registers itself in ``PROBE_TYPES`` when defined.

Every module in this folder is imported here, so adding a probe type is one new file (plus its tests).
"""

import importlib
import pkgutil

from .attention import AttentionProbe
from .base import PROBE_TYPES, Probe, baseline_types, load_probe, probe_matches, read_config
from .embedding import EmbeddingProbe
from .length import LengthProbe
from .linear import LinearProbe
from .shared import SharedDirectionProbe
from .tfidf import TfidfProbe

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["PROBE_TYPES", "Probe", "AttentionProbe", "LinearProbe", "SharedDirectionProbe", "LengthProbe", "TfidfProbe", "EmbeddingProbe", "baseline_types", "load_probe",
           "probe_matches", "read_config"]
