"""Inside the model: which attention heads a probe's reading depends on, steering along its direction, and cross-difficulty transfer.

The defaults live here, free of torch, so that ``probes-hub --help`` stays fast.
"""

DEFAULT_PROBE = "smollm2-135m-instruct--math500--level--linear"
"""The bundled MATH-500 level probe of the embedded model: the analyses' default."""
ABLATIONS = ("zero", "mean")
DEFAULT_ALPHAS = (-16.0, -8.0, 0.0, 8.0, 16.0)
"""Steering strengths, in units of the test questions' spread (standard deviation) along the probe direction."""
DEFAULT_TRANSFER_LABEL = "success_rate"
