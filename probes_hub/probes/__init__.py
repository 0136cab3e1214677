"""Probe estimators: linear probes on activations and the length / TF-IDF baselines."""

from .base import PROBE_TYPES, Probe, load_probe, read_config
from .baselines import LengthProbe, TfidfProbe
from .linear import LinearProbe, SharedDirectionProbe

__all__ = ["PROBE_TYPES", "Probe", "LinearProbe", "SharedDirectionProbe", "LengthProbe", "TfidfProbe", "load_probe", "read_config"]
