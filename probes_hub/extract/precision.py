"""Which floating-point precision a model's weights and forward pass use: float32, bfloat16, or ``auto``.

bfloat16 matrix units (AVX512-BF16 or AMX on server CPUs, every GPU) multiply about twice as fast as float32,
but they move activations by up to a few percent, so a probe's readings may shift. The precision is part of a
model's fingerprint (``source:dtype``): activation caches are kept per precision, and a probe records the
precision of the features it was trained on. Which probes may be read in another precision than their own is
:func:`probes_hub.probes.base.serving_dtype`'s rule; ``probes-hub verify-dtype`` measures it.

The requested precision comes from, first to last: an explicit argument, the command's ``--dtype``
(:func:`use_dtype`), ``PROBES_HUB_DTYPE``, float32.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

FLOAT32, BFLOAT16, AUTO = "float32", "bfloat16", "auto"
DTYPES = (FLOAT32, BFLOAT16)
"""The precisions a model can be loaded in."""
DTYPE_CHOICES = (*DTYPES, AUTO)
"""What ``--dtype`` and ``PROBES_HUB_DTYPE`` accept: ``auto`` is bfloat16 on CUDA or a CPU with bfloat16 units, float32 elsewhere."""
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of CPUs whose matrix units multiply bfloat16 natively."""

_FINGERPRINT_DTYPE = re.compile(r":(float32|bfloat16|float16)(?=\+|$)")
_REQUESTED: ContextVar[str | None] = ContextVar("probes_hub_dtype", default=None)


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix units (Linux: read from /proc/cpuinfo; elsewhere assumed not)."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def check_dtype(name: str, *, where: str = "--dtype") -> str:
    """``name`` if it is a precision choice, else a ValueError that lists them."""
    if name not in DTYPE_CHOICES:
        raise ValueError(f"{where} must be one of {', '.join(DTYPE_CHOICES)}, not {name!r}.")
    return name


def requested_dtype() -> str:
    """The precision asked for: the command's ``--dtype`` (:func:`use_dtype`), else ``PROBES_HUB_DTYPE``, else float32."""
    from probes_hub.config import setting

    return _REQUESTED.get() or str(setting("PROBES_HUB_DTYPE"))


def resolve_dtype(name: str | None, device_type: str) -> str:
    """A concrete precision for a model on ``device_type`` (``"cpu"``, ``"cuda"``): ``name`` (default :func:`requested_dtype`),
    with ``auto`` bfloat16 on CUDA or a CPU with bfloat16 units (:func:`cpu_has_bf16`) and float32 elsewhere."""
    name = check_dtype(name) if name else requested_dtype()
    if name != AUTO:
        return name
    return BFLOAT16 if device_type == "cuda" or (device_type == "cpu" and cpu_has_bf16()) else FLOAT32


@contextlib.contextmanager
def use_dtype(name: str | None) -> Iterator[None]:
    """Load models inside the ``with`` block in precision ``name`` (None: no change), as a command's ``--dtype`` asks."""
    token = _REQUESTED.set(check_dtype(name)) if name else None
    try:
        yield
    finally:
        if token is not None:
            _REQUESTED.reset(token)


def fingerprint_dtype(fingerprint: str) -> str | None:
    """The precision a fingerprint records (``source:dtype``; a pair's first part), or None for one that records none."""
    found = _FINGERPRINT_DTYPE.search(fingerprint)
    return found.group(1) if found else None


def weights_fingerprint(fingerprint: str) -> str:
    """The fingerprint without its precision(s): the same weights in any precision give the same value."""
    return _FINGERPRINT_DTYPE.sub("", fingerprint)


def with_dtype(fingerprint: str, dtype: str) -> str:
    """The fingerprint of the same weights loaded in ``dtype`` (each model of a pair)."""
    return _FINGERPRINT_DTYPE.sub(f":{dtype}", fingerprint)
