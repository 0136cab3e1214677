"""Build the app the way a Hugging Face Space does, and measure its memory.

A Gradio Space installs ``pre-requirements.txt`` (when present) and ``requirements.txt`` into a fresh Python, then
runs ``python app.py`` in the repository (``packages.txt`` would add Debian packages; this project needs none).
Nothing else runs: no Makefile, no ``pip install -e .``. :func:`space_venv` does exactly that in a new virtual
environment (pip's cache and configured index are used; the project's ``.venv`` is not). The Space-faithful test
and ``eval.bench_app --space`` use it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from probes_hub.paths import PROJECT_ROOT

SPACE_INSTALL_FILES = ("pre-requirements.txt", "requirements.txt")
"""What a Space installs, in order (only those that exist)."""


def space_venv(folder: Path) -> tuple[Path, float]:
    """A fresh virtual environment in ``folder`` with only the Space's install files installed; (its python, seconds it took)."""
    started = time.time()
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    for name in SPACE_INSTALL_FILES:
        if (PROJECT_ROOT / name).exists():
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", name], cwd=PROJECT_ROOT, check=True)
    return python, time.time() - started


def tree_memory_mb(pid: int, field: str = "VmHWM", *, children: bool = True) -> float:
    """Sum of one /proc memory figure of a process and (unless ``children=False``) all its descendants, in MiB (Linux): ``VmHWM``
    the peak resident memory, ``VmRSS`` the current one. A child belongs to the thread that started it, so every thread's
    children are read (the app starts its evaluation lane from a request thread)."""
    total_kb, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            found = [child for task in Path(f"/proc/{current}/task").iterdir() for child in (task / "children").read_text().split()]
        except OSError:  # exited meanwhile
            continue
        total_kb += next((int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:")), 0)
        pending.extend(int(child) for child in (found if children else []))
    return total_kb / 1024
