"""Give memory freed between requests back to the system, so that a long-running app's resident memory levels off.

Tensors of changing shapes (each batch of questions has its own lengths) leave freed blocks in glibc's per-thread arenas,
which the allocator keeps: over thousands of requests the app's and its model worker's resident memory crept up by
about 20 MB per 100 requests. Capping the arenas at two and trimming after each batch keeps it flat (``eval.bench_app --soak``).
Where the C library is not glibc both calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

ARENAS = 2
"""Malloc arenas a process keeps at most (glibc's default is eight per core)."""
_M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number for the arena cap."""


@functools.cache
def _glibc():
    """glibc, or None (another C library, or none found)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 (only glibc has it)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(count: int = ARENAS) -> None:
    """Cap this process's malloc arenas (call early, before threads allocate)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, count)


def release_free_memory() -> None:
    """Return the allocator's free memory to the system (a few milliseconds; called after each batch)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
