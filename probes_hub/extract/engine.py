"""Which engine runs activation extraction: this process (the default) or one the caller installs, e.g. Ray actors.

``cached_extract`` asks :func:`current_extractor` for the function that turns prompts into activations, so that the
cache, the templates and every caller stay the same whichever engine computes the arrays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Extractor = Callable[..., object]
"""``(lm, prompt_ids, layers, positions, *, shared_prefix, progress) -> [N, L, P, hidden]``, as :func:`probes_hub.extract.activations.extract`."""

_EXTRACTOR: ContextVar[Extractor | None] = ContextVar("probes_hub_extractor", default=None)


def current_extractor() -> Extractor | None:
    """The installed extractor, or None for this process's own :func:`~probes_hub.extract.activations.extract`."""
    return _EXTRACTOR.get()


@contextlib.contextmanager
def extraction_engine(extractor: Extractor) -> Iterator[None]:
    """Run every extraction inside the ``with`` block through ``extractor``."""
    token = _EXTRACTOR.set(extractor)
    try:
        yield
    finally:
        _EXTRACTOR.reset(token)
