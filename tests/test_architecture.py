"""Architecture rules that CI enforces (docs/architecture.md) and packaging that must not rot."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is part of the dev extra"
    done = subprocess.run([lint, "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_every_package_folder_ships_in_the_wheel() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for root in ("engine", "gui")
             for p in (REPO / root).rglob("__init__.py")}
    resources = {"tunebench_resources"} | {f"tunebench_resources.{p.name}" for p in (REPO / "resources").iterdir()
                                           if p.is_dir() and not p.name.startswith((".", "_"))}
    assert found | resources == listed


def test_the_window_starts_without_loading_torch() -> None:
    code = ("import sys, gui.app, gui.main_window;"
            "print(sorted({'torch', 'transformers', 'datasets', 'peft', 'trl'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__('os').environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_engine_module_imports_another_in_a_loop() -> None:
    """The layers contract orders the stage packages; this catches loops inside one package too,
    including imports hidden inside functions (grimp reads every import statement)."""
    import grimp

    graph = grimp.build_graph("engine")
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    assert _import_cycles(edges) == []


def test_the_cycle_finder_finds_a_loop() -> None:
    assert _import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Libraries that take seconds to import or come with optional extras: engine modules import them
# where they are used, so the CLI's help, the handshake and the modules the window shares stay light.
HEAVY_LIBRARIES = {"torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "gguf", "safetensors",
                   "accelerate", "numpy", "pyarrow", "psutil", "pynvml", "sacrebleu", "rouge_score", "optuna",
                   "cmaes", "tomli_w", "huggingface_hub", "llama_cpp", "lm_eval", "sklearn", "sqlalchemy",
                   "llguidance"}


def _local_imports_without_a_reason(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                modules = [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                modules = [inner.module]
            else:
                continue
            heavy = all(module.split(".")[0] in HEAVY_LIBRARIES for module in modules)
            if not heavy and "#" not in lines[inner.lineno - 1]:
                found.append(f"{path.relative_to(REPO)}:{inner.lineno}: {', '.join(modules)}")
    return found


def test_every_import_inside_an_engine_function_is_a_heavy_library_or_says_why() -> None:
    """docs/architecture.md: imports inside functions keep the heavy libraries lazy; any other
    one must say on its line why it is not at the top (so none hides an import loop)."""
    found = [hit for path in sorted((REPO / "engine").rglob("*.py")) for hit in _local_imports_without_a_reason(path)]
    assert found == []


def test_no_machine_path_is_left_in_the_code_or_docs() -> None:
    """A path on someone's machine (a home folder, a checkout, a scratch folder) means nothing to
    a reader and breaks on every other machine. Tests keep their deliberately fake paths."""
    import re

    pattern = re.compile(r"(/home/[a-z_][\w.-]*/|/Users/[\w.-]+/|[A-Z]:\\Users\\\w|/root/|/work/|/tmp/tb)")
    roots = ["engine", "gui", "installer", "benchmarks", "docs", "resources", "README.md", "pyproject.toml"]
    hits = []
    for root in roots:
        paths = [REPO / root] if (REPO / root).is_file() else sorted((REPO / root).rglob("*"))
        for path in paths:
            if path.suffix not in (".py", ".md", ".toml", ".txt", ".sh", ".nsi", ".desktop", ".json", ".cfg"):
                continue
            if "locks" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert hits == []


def test_recorded_transcripts_carry_no_scratch_path_of_the_machine_that_recorded_them() -> None:
    """Transcripts are recorded from real engine runs in scratch folders; their paths are rewritten
    to one fictional user's (/home/ada/...) before they are committed."""
    hits = [f"{path.relative_to(REPO)}:{number}"
            for path in sorted((REPO / "tests" / "transcripts").rglob("*")) if path.is_file()
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if "/tmp/" in line or "/work/" in line or "/root/" in line]
    assert hits == []
