"""The layout holds: every module imports on its own, no import cycles, stages import downward.

The import graph is read from the source with ``ast`` (module-level imports, ``TYPE_CHECKING``
blocks left out), so a test fails on the line that breaks a rule, not on a lucky import order.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
PACKAGE: Final = "klaviyo_destination"
SOURCE: Final = ROOT / "src" / PACKAGE
MAX_LINES: Final = 400

#: Klaviyo's facts: a module of ``klaviyo/`` that imports nothing, read from the ground floor up.
FACTS: Final = "klaviyo.facts"
#: What each part may import from this package: the pipeline's direction, bottom to top. An
#: entry is a part, or one module of a part (``FACTS``).
ALLOWED: Final = {
    "js": set(),
    "errors": set(),
    "redact": set(),
    "content_length": set(),
    "planned": {"errors", "js", FACTS},
    "settings": {"planned", "errors", "js", FACTS},
    "ingest": {"ingest", "errors", "js", "settings", "planned", FACTS},
    "mapping": {"mapping", "ingest", "planned", "errors", "js", "settings", FACTS},
    # The webhook path's phone rule (Part A 11): reads the mapping's lookups, edits its plans.
    "phones": {"mapping", "ingest", "planned", "errors", "js", FACTS},
    "pipeline": {"ingest", "mapping", "phones", "planned", "errors", "js", "settings", FACTS},
    "klaviyo": {
        "klaviyo", "mapping", "ingest", "planned", "errors", "js", "redact", "settings",
        "content_length", "phones",
    },
    "protocol": {
        "protocol", "klaviyo", "pipeline", "mapping", "ingest", "planned", "errors", "js",
        "redact", "settings",
    },
    "emulator": {"emulator", FACTS},
    "logs": {"redact"},
    # How serve serves the app: above the routes it serves, below app and cli that wire it.
    "serving": {
        "serving", "api", "protocol", "klaviyo", "pipeline", "mapping", "ingest", "planned",
        "errors", "js", "redact", "settings", "logs",
    },
}  # fmt: skip
#: The top of the tree wires everything together.
TOP: Final = {"api", "app", "cli", "__main__", "__init__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: Final = sorted(module_name(p) for p in SOURCE.rglob("*.py"))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # ``from pkg import name``: ``pkg.name`` when it is a module, else ``pkg`` itself.
    return [
        f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix
        for alias in node.names
    ]


def _module_level(tree: ast.Module) -> Iterator[ast.stmt]:
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node


def imports_of(module: str) -> set[str]:
    """Modules of this package that ``module`` imports when it is first imported."""
    path = SOURCE.parent.joinpath(*module.split("."))
    is_package = path.is_dir()
    file = path / "__init__.py" if is_package else path.with_suffix(".py")
    found: set[str] = set()
    for node in _module_level(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, is_package, node))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == PACKAGE and name != module}


def graph() -> dict[str, set[str]]:
    """Edges to every imported module and to the packages above it, which run first."""
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        targets: set[str] = set()
        for target in imports_of(module):
            parts = target.split(".")
            targets.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        edges[module] = {t for t in targets if t != module and not module.startswith(t + ".")}
    return edges


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        path.append(node)
        for target in sorted(edges.get(node, ())):
            visit(target)
        path.pop()
        done.add(node)

    for module in MODULES:
        visit(module)


@pytest.mark.parametrize("module", [m for m in MODULES if part_of(m) not in TOP])
def test_stages_import_only_downward(module: str) -> None:
    part = part_of(module)
    allowed = ALLOWED[part]
    wrong = sorted(
        i
        for i in imports_of(module)
        if part_of(i) not in allowed | {part} and i.removeprefix(PACKAGE + ".") not in allowed
    )
    assert wrong == [], f"{module} ({part}) may import only {sorted(allowed)}"


def test_facts_import_nothing_heavy() -> None:
    """The emulator and the settings read Klaviyo's facts without loading the client."""
    script = f"import sys, {PACKAGE}.{FACTS}; print(sorted(sys.modules))"
    result = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = set(ast.literal_eval(result.stdout))
    ours = {name for name in loaded if name.split(".")[0] == PACKAGE}
    assert ours == {PACKAGE, f"{PACKAGE}.klaviyo", f"{PACKAGE}.{FACTS}"}
    assert not loaded & {"httpx", "stamina", "pydantic", "orjson"}


@pytest.mark.parametrize("module", [m for m in MODULES if part_of(m) == "api"])
def test_the_routes_never_reach_the_serving_machinery(module: str) -> None:
    """``api/`` is served either way (``SERVE_LANES``): it knows neither the lanes nor the app."""
    above = {"serving", "app", "cli", "__main__"}
    wrong = sorted(i for i in imports_of(module) if part_of(i) in above)
    assert wrong == [], f"{module} imports {wrong}"


def test_every_module_imports_on_its_own() -> None:
    """Each module in a fresh copy of the package, in one interpreter (third-party libraries
    stay loaded, so this takes a second, not a minute)."""
    script = textwrap.dedent(
        f"""
        import importlib, sys, traceback
        failed = []
        for name in {MODULES!r}:
            for loaded in [m for m in sys.modules if m.split(".")[0] == {PACKAGE!r}]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception:
                failed.append(name + ": " + traceback.format_exc(limit=1).splitlines()[-1])
        print("\\n".join(failed))
        """
    )
    result = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""


def test_nothing_imports_test_code_or_a_conftest() -> None:
    offenders = []
    for folder in ("src", "tests", "bench", "reliability", "support"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                for name in names:
                    if "conftest" in name.split("."):
                        offenders.append(f"{path.relative_to(ROOT)} imports {name}")
                    top = name.split(".")[0]
                    if folder in ("src", "support", "bench", "reliability") and top == "tests":
                        offenders.append(f"{path.relative_to(ROOT)} imports {name}")
                    if folder == "tests" and top in ("bench", "reliability"):
                        offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


@pytest.mark.parametrize("module", MODULES)
def test_modules_stay_small(module: str) -> None:
    path = SOURCE.parent.joinpath(*module.split("."))
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    lines = len(file.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines (split it by what it holds)"
