"""Honest packaging: each extra installs what its code imports. Every third-party module that the code
behind a part of the lab imports (at any depth, lazy imports in functions included) must come from a
distribution that pyproject.toml declares for that part, so the next undeclared import fails here
instead of in a user's fresh venv. And the files an installed lab needs at run time ship in the wheel."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import click
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lab.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
BASE = "base"  # [project] dependencies: what the provider and gateway images install

# The extra that installs the code behind each `lab` command.
COMMAND_EXTRAS = {
    "provider": BASE,
    "gateway": BASE,
    "control": "load",  # runs in the Locust image (docker, requests)
    "images": "orchestrator",
    "up": "orchestrator",
    "down": "orchestrator",
    "gateways": "orchestrator",
    "ps": "orchestrator",
    "run": "orchestrator",
    "scenario": "orchestrator",
    "report": "analysis",
    "compare": "analysis",
    "baseline": "analysis",
    "history": "analysis",
}
# Code that runs without a command of its own.
ENTRY_POINTS: dict[str, list[str]] = {
    BASE: ["lab.cli", "lab.__main__"],
    # The locustfile runs in Locust's own process: `lab run` starts it with this interpreter (so the
    # orchestrator needs it too), the Locust image with the `load` extra.
    "load": ["lab.load.locustfile"],
    "orchestrator": ["lab.load.locustfile", "lab.pytest_plugin"],
}
# The checkout's user-facing locustfiles (not in the wheel) need what the load extra installs.
CHECKOUT_FILES = {"load": sorted((ROOT / "locustfiles").glob("*.py"))}
# Imported only where its host process provides it: pytest loads the lab's pytest plugin.
PROVIDED_BY_HOST = {"pytest", "_pytest"}


def module_file(name: str) -> Path | None:
    """The file of a module of the lab (None: not one of the lab's modules)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _guards_import_error(node: ast.Try) -> bool:
    names = []
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names += [k.id for k in kinds if isinstance(k, ast.Name)]
    return bool({"ImportError", "ModuleNotFoundError"} & set(names))


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports that run: not those under `if TYPE_CHECKING:`, nor optional ones (in a `try:` whose
    `except ImportError` carries on without them)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            yield from (i for child in node.orelse for i in runtime_imports(ast.Module([child], [])))
        elif isinstance(node, ast.Try) and _guards_import_error(node):
            for part in (node.handlers, node.orelse, node.finalbody):
                yield from (i for child in part for i in runtime_imports(ast.Module([child], [])))
        else:
            yield from runtime_imports(node)


def imported_names(path: Path, package: str) -> Iterator[str]:
    """Dotted names imported by the file at `path` (of `package`), with `from x import y` as x and x.y."""
    for node in runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
            continue
        if node.level:  # relative: from the package upwards
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join([*parts, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        yield module
        yield from (f"{module}.{alias.name}" for alias in node.names)


def third_party_imports(roots: list[str], files: list[Path]) -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it, over the lab modules reachable from
    `roots` (and `files`) through their imports."""
    found: dict[str, set[str]] = {}
    pending: list[tuple[Path, str]] = [(path, "") for path in files]
    seen: set[str] = set()

    def visit(name: str) -> None:
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            prefix = ".".join(parts[:depth])
            path = module_file(prefix)
            if path is not None and prefix not in seen:
                seen.add(prefix)
                pending.append((path, prefix if path.name == "__init__.py" else prefix.rpartition(".")[0]))

    for root in roots:
        visit(root)
    while pending:
        path, package = pending.pop()
        for name in imported_names(path, package):
            top = name.split(".")[0]
            if top == "lab":
                visit(name)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, set()).add(
                    path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
                )
    return found


def declared(extra: str) -> set[str]:
    """Canonical names of the distributions `extra` installs (with the base, self-references expanded)."""
    optional: dict[str, list[str]] = PROJECT["optional-dependencies"]
    names = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    pending, done = [extra] if extra != BASE else [], set()
    while pending:
        current = pending.pop()
        if current in done:
            continue
        done.add(current)
        for text in optional[current]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(PROJECT["name"]):
                pending.extend(requirement.extras)
            else:
                names.add(canonicalize_name(requirement.name))
    return names


def command_modules() -> dict[str, str]:
    ctx = click.Context(main)
    modules = {}
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None and command.callback is not None, name
        modules[name] = command.callback.__module__
    return modules


def parts() -> dict[str, list[str]]:
    roots: dict[str, list[str]] = {extra: list(entries) for extra, entries in ENTRY_POINTS.items()}
    for name, module in command_modules().items():
        roots.setdefault(COMMAND_EXTRAS[name], []).append(module)
    return roots


def test_every_command_belongs_to_an_extra() -> None:
    assert set(command_modules()) == set(COMMAND_EXTRAS), "add the new command to COMMAND_EXTRAS"


@pytest.mark.parametrize("extra", [BASE, "orchestrator", "load", "analysis"])
def test_each_extra_installs_what_its_code_imports(extra: str) -> None:
    providers = metadata.packages_distributions()
    allowed = declared(extra)
    problems = []
    imports = third_party_imports(parts().get(extra, []), CHECKOUT_FILES.get(extra, []))
    assert imports, f"no third-party import found for {extra}: is the walk broken?"
    for module, files in sorted(imports.items()):
        if module in PROVIDED_BY_HOST:
            continue
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        if not distributions:
            problems.append(f"{module}: not installed here (imported by {', '.join(sorted(files))})")
        elif not distributions & allowed:
            problems.append(
                f"{module} ({', '.join(sorted(distributions))}) is imported by {', '.join(sorted(files))} "
                f"but the {extra!r} part of pyproject.toml does not declare it"
            )
    assert problems == [], "\n".join(problems)


def test_the_walk_sees_lazy_imports_and_skips_optional_and_type_checking_ones(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import yaml\n"
        "if TYPE_CHECKING:\n    import pandas\nelse:\n    import numpy\n"
        "def f():\n    from docker import errors\n"
        "try:\n    import scipy\nexcept ImportError:\n    scipy = None\n"
        "try:\n    import rich\nexcept OSError:\n    pass\n"
    )
    assert set(third_party_imports([], [source])) == {"yaml", "numpy", "docker", "rich"}


def test_an_undeclared_import_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENTRY_POINTS, BASE, [*ENTRY_POINTS[BASE], "lab.analysis.plots"])  # matplotlib
    with pytest.raises(AssertionError, match=r"matplotlib .* does not declare it"):
        test_each_extra_installs_what_its_code_imports(BASE)


def test_the_wheel_ships_the_dockerfiles_and_the_locustfile_as_package_data() -> None:
    """What an installed lab reads as files: the images' build inputs and the locustfile Locust loads."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {p for pattern in patterns["lab"] for p in (ROOT / "lab").glob(pattern) if p.is_file()}
    needed = [
        ROOT / "lab/images/python/Dockerfile",
        ROOT / "lab/images/toxiproxy/Dockerfile",
        ROOT / "lab/images/toxiproxy/server/Cargo.toml",
        ROOT / "lab/images/toxiproxy/server/Cargo.lock",
        ROOT / "lab/webui/faults.html",
    ]
    assert [p for p in needed if p not in shipped] == []
    assert module_file("lab.load.locustfile") is not None  # a module: shipped like any other
