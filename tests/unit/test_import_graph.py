"""The import graph: no cycles (function-level imports included) and DESIGN.md's layers.

A cycle hidden behind a function-level import works until someone moves the import up;
a layer broken by one import (the engine reaching for HTTP, the server for Airflow)
drags a whole stack into a process that must run without it. Both are read from the
source with ``ast``, so nothing is imported and every import statement counts, wherever
it sits.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"dicom_deid": ROOT / "src" / "dicom_deid",
            "dicom_deid_airflow": ROOT / "plugins" / "dicom_deid_airflow"}
#: The engine modules the Airflow side may use: rendering a frame, the two text readers
#: (Tesseract, RapidOCR), approximate matching. Everything else in the engine is its own
#: business.
ENGINE_API_FOR_CLIENTS = {"dicom_deid.engine.pixels.grey", "dicom_deid.engine.ocr",
                          "dicom_deid.engine.ocr_rapid", "dicom_deid.engine.fuzzy"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    for path in (ROOT / "dags").glob("*.py"):
        found[f"dags.{path.stem}"] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every module an import statement in ``path`` names (absolute names)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph[name] = {target for target in _imports(name, path)
                       if target in MODULES and target != name}
    return graph


def _external(name: str) -> set[str]:
    return set(_imports(name, MODULES[name]))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert len(graph) > 50
    assert "dicom_deid_airflow.hooks.healthcare" in graph["dicom_deid_airflow.steps"]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_a_cycle_is_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _starts(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("layer, forbidden", [
    ("dicom_deid.engine", ("airflow", "dicom_deid_airflow", "dicom_deid.server", "requests",
                           "httpx", "urllib3", "googleapiclient", "google.cloud", "fastapi",
                           "starlette", "uvicorn", "dicomweb_client")),
    ("dicom_deid.server", ("airflow", "dicom_deid_airflow")),
    ("dicom_deid_airflow", ("dicom_deid.server", "dicom_deid.corpus", "dicom_deid.devstack",
                            "dicom_deid.demo", "dicom_deid.up", "dicom_deid.cli")),
    ("dags", ("dicom_deid",)),
])
def test_layers(layer: str, forbidden: tuple[str, ...]) -> None:
    """DESIGN.md's layers: dependencies point downwards only."""
    broken = sorted(f"{name} imports {target}" for name in MODULES if _starts(name, (layer,))
                    for target in _external(name) if _starts(target, forbidden))
    assert broken == []


def test_the_airflow_side_uses_only_the_engines_client_api() -> None:
    used = {target for name in MODULES if _starts(name, ("dicom_deid_airflow",))
            for target in _external(name)
            if target in MODULES and _starts(target, ("dicom_deid.engine",))}
    assert used <= ENGINE_API_FOR_CLIENTS | {"dicom_deid.engine"}, used - ENGINE_API_FOR_CLIENTS


def _reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen


def test_the_engine_is_free_of_http_clients_transitively() -> None:
    """What the engine imports of our own modules (``dicom_deid.api_schema``, say) must be
    as free of HTTP client libraries as the engine itself."""
    graph = _graph()
    forbidden = ("requests", "httpx", "urllib3", "googleapiclient", "google.cloud",
                 "dicomweb_client", "airflow", "fastapi")
    broken = sorted(f"{start} -> {name} imports {target}"
                    for start in MODULES if _starts(start, ("dicom_deid.engine",))
                    for name in _reachable(start, graph)
                    for target in _external(name) if _starts(target, forbidden))
    assert broken == []


def test_the_report_app_loads_only_what_it_serves() -> None:
    """The API server imports the report app at its first request: beyond what the API
    server has loaded already (Airflow's security dependencies, FastAPI), it must not
    drag in the task bodies, yaml, Cloud Storage or the discovery client to find a
    folder."""
    import json
    import subprocess

    code = (
        "import json, sys; sys.path.insert(0, 'plugins');"
        "import airflow.api_fastapi.core_api.security, fastapi.responses;"
        "before = set(sys.modules);"
        "import dicom_deid_airflow.report_app;"
        "print(json.dumps(sorted(set(sys.modules) - before)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = {name for name in json.loads(done.stdout.strip().splitlines()[-1])
              if not _starts(name, ("pydantic",))}  # FastAPI() builds its models lazily
    assert loaded == {"dicom_deid_airflow", "dicom_deid_airflow.report_app",
                      "dicom_deid_airflow.report_paths"}
