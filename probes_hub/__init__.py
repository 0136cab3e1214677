"""probes_hub: difficulty and success probes on an LLM's pre-generation activations."""

__version__ = "0.1.0"

from .probes import LengthProbe, LinearProbe, Probe, TfidfProbe, load_probe  # noqa: E402

__all__ = ["__version__", "Probe", "LinearProbe", "LengthProbe", "TfidfProbe", "load_probe"]
