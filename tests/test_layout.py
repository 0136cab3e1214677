"""The package's shape: no import cycles inside probes_hub (counting imports inside functions), and the
library and the app never import the benchmarks in eval/."""

from __future__ import annotations

import ast
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
