"""The package's shape: no import cycles inside probes_hub (counting imports inside functions), and the
library and the app never import the benchmarks in eval/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from probes_hub.paths import PACKAGE_ROOT, PROJECT_ROOT


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every module of ``modules`` that ``path`` imports, anywhere in the file (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules or t.split(".")[0] == "eval"}
    return found - {name}


def _graph(root: Path) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in root.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def test_no_import_cycle_inside_probes_hub():
    graph = {name: {t for t in targets if t.startswith("probes_hub")} for name, targets in _graph(PACKAGE_ROOT).items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target] if target in stack else [node, target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], f"import cycles: {cycles}"


def test_library_and_app_never_import_eval():
    offenders = {name: sorted(t for t in targets if t.split(".")[0] == "eval")
                 for root in (PACKAGE_ROOT, PROJECT_ROOT / "space_app") for name, targets in _graph(root).items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_probe_type_declares_its_facts():
    from probes_hub.probes import PROBE_TYPES, baseline_types

    assert set(PROBE_TYPES) >= {"linear", "shared", "length", "tfidf", "embedding"} and set(baseline_types()) == {"embedding", "length", "tfidf"}
    for cls in PROBE_TYPES.values():
        assert isinstance(cls.reads_activations, bool) and isinstance(cls.is_baseline, bool) and isinstance(cls.model_bound, bool)
        assert cls.tasks and cls.__doc__
    assert not PROBE_TYPES["tfidf"].model_bound and not PROBE_TYPES["embedding"].model_bound and PROBE_TYPES["length"].model_bound
    assert PROBE_TYPES["linear"].reads_activations and not PROBE_TYPES["embedding"].reads_activations


LAYER_BLOCK = re.compile(r"<!-- layers:start -->(.*?)<!-- layers:end -->", re.S)
UPWARD_EXCEPTIONS = {("probes_hub.probes.base", "probes_hub.hub.storage")}
"""Imports allowed to go up a layer, each named in docs/architecture.md (``Probe.push_to_hub``, imported when called)."""


def _layers() -> dict[str, int]:
    """Top-level module or package of probes_hub -> its layer number, as docs/architecture.md lists them."""
    block = LAYER_BLOCK.search((PROJECT_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")).group(1)
    layers = {}
    for line in block.strip().splitlines():
        number, _, names = line.partition(". ")
        for name in re.findall(r"`([\w_]+)`", names.split("(")[0]):
            layers[name] = int(number)
    return layers


def test_every_package_imports_only_its_layer_or_earlier_ones_as_the_architecture_doc_lists():
    layers = _layers()
    top = {_module_name(p).split(".")[1] for p in PACKAGE_ROOT.rglob("*.py") if _module_name(p) != "probes_hub"}
    assert top - set(layers) == set(), "add every top-level module and package of probes_hub to the layer list in docs/architecture.md"
    upward = []
    for module, targets in _graph(PACKAGE_ROOT).items():
        if module == "probes_hub":
            continue
        for target in targets:
            if target.startswith("probes_hub.") and layers[target.split(".")[1]] > layers[module.split(".")[1]]:
                upward.append((module, target))
    assert sorted(set(upward) - UPWARD_EXCEPTIONS) == []
    assert UPWARD_EXCEPTIONS <= set(upward), "an exception no longer needed: remove it here and from docs/architecture.md"


def test_files_change_on_disk_only_through_the_atomic_module():
    """Temp-then-rename is written once (probes_hub/atomic.py); every other writer calls it."""
    pattern = re.compile(r"os\.replace\(|tempfile\.mkdtemp\(|tempfile\.mkstemp\(|\.rename\((?!columns)")
    offenders = [str(p.relative_to(PROJECT_ROOT)) for root in (PACKAGE_ROOT, PROJECT_ROOT / "space_app") for p in root.rglob("*.py")
                 if p.name != "atomic.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
