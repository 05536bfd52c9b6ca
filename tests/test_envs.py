"""The conda environments of envs/: fully pinned, at the versions the tests run with, covering every runtime
dependency of the package, and used by the rules.

Conda itself cannot run on the development machines, so the environments are checked here, never built.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

ENVS = sorted((ROOT / "envs").glob("*.yaml"))
# conda-forge/bioconda names of PyPI packages whose conda name differs
CONDA_NAME = {
    "igraph": "python-igraph",
    "matplotlib": "matplotlib-base",
    "tiledbsoma": "tiledbsoma-py",
    "decoupler": "decoupler-py",
}
PYPI_NAME = {conda: pypi for pypi, conda in CONDA_NAME.items()} | {"matplotlib": "matplotlib"}
# run Snakemake itself (outside the job environments), not the rules' code
WORKFLOW_MANAGER = re.compile(r"^snakemake(-|$)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement(spec: str) -> tuple[str, str | None]:
    """('name', 'version') of a ``name==version`` requirement; version None when not pinned exactly."""
    m = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(?:==\s*([A-Za-z0-9_.+!-]+))?\s*(?:;.*)?$", spec)
    if not m:
        return _norm(re.split(r"[\s<>=!~;\[]", spec.strip(), maxsplit=1)[0]), None
    return _norm(m.group(1)), m.group(2)


def _runtime_requirements() -> dict[str, str | None]:
    """The package's dependencies plus those of the `workflow` extra that the rules' code uses."""
    project = _pyproject()
    specs = project["dependencies"] + project.get("optional-dependencies", {}).get("workflow", [])
    reqs = dict(_requirement(s) for s in specs if not s.startswith("cscniche"))
    return {n: v for n, v in reqs.items() if not WORKFLOW_MANAGER.match(n)}


def _all_pyproject_pins() -> dict[str, str | None]:
    project = _pyproject()
    specs = project["dependencies"] + [s for group in project.get("optional-dependencies", {}).values() for s in group]
    return dict(_requirement(s) for s in specs if not s.startswith("cscniche"))


def _env_entries(path: Path) -> list[tuple[str, str, str | None]]:
    """(source, PyPI-style name, exact version or None) of every package of a conda environment file."""
    env = yaml.safe_load(path.read_text())
    entries = []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            for spec in dep.get("pip", []):
                name, version = _requirement(spec)
                entries.append(("pip", name, version))
            continue
        spec = str(dep).split("::")[-1].strip()
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*(==?)\s*([A-Za-z0-9_.+!-]+)$", spec)
        name = _norm(m.group(1) if m else re.split(r"[\s<>=!~]", spec, maxsplit=1)[0])
        entries.append(("conda", PYPI_NAME.get(name, name), m.group(3) if m else None))
    return entries


def _pins() -> dict[str, dict[str, str | None]]:
    return {p.name: {name: version for _, name, version in _env_entries(p)} for p in ENVS}


def _imported_distributions(module_level_only: bool = False) -> dict[str, set[str]]:
    """Distribution -> files of src/cscniche importing it; all imports, or only those run by ``import cscniche``
    (at module level, not inside a function)."""
    stdlib = set(sys.stdlib_module_names)
    dists = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}

    def visit(node: ast.AST, py: Path) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                modules = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                modules = [child.module]
            else:
                modules = []
            for module in modules:
                top = module.split(".")[0]
                if top not in stdlib and top != "cscniche":
                    for dist in dists.get(top, [top]):
                        found.setdefault(_norm(dist), set()).add(py.name)
            visit(child, py)

    for py in sorted((ROOT / "src" / "cscniche").rglob("*.py")):
        visit(ast.parse(py.read_text()), py)
    return found


def test_there_are_environments_and_every_package_in_them_is_pinned():
    assert {"core.yaml"} <= {p.name for p in ENVS}
    problems = []
    for path in ENVS:
        env = yaml.safe_load(path.read_text())
        assert "conda-forge" in env["channels"] and "nodefaults" in env["channels"], path.name
        for source, name, version in _env_entries(path):
            if version is None:
                problems.append(f"{path.name}: {name} ({source}) has no exact version")
        python = {n: v for _, n, v in _env_entries(path)}.get("python")
        req = _pyproject()["requires-python"]
        assert python and tuple(map(int, python.split("."))) >= tuple(map(int, req.lstrip(">=").split("."))), (
            path.name,
            python,
        )
    assert not problems, "\n".join(problems)


def test_environments_pin_the_versions_the_tests_run_with():
    declared = _all_pyproject_pins()
    problems = []
    seen: dict[str, tuple[str, str]] = {}
    for env, pins in _pins().items():
        for name, version in pins.items():
            if name in declared and declared[name] != version:
                problems.append(f"{env}: {name}={version}, pyproject.toml pins {declared[name]}")
            if name in seen and seen[name][1] != version:
                problems.append(f"{env}: {name}={version}, {seen[name][0]} pins {seen[name][1]}")
            seen.setdefault(name, (env, version))
    assert not problems, "\n".join(problems)


def test_every_runtime_dependency_is_pinned_in_an_environment():
    pinned = {name for pins in _pins().values() for name, version in pins.items() if version}
    needed = set(_runtime_requirements()) | set(_imported_distributions())
    missing = sorted(needed - pinned)
    assert not missing, f"runtime dependencies pinned in no envs/*.yaml: {missing}"


def test_every_environment_carries_what_importing_the_package_needs():
    # the rules' scripts `import cscniche`, which imports every module: each environment needs their module-level
    # imports (a library imported inside a function, e.g. squidpy, is needed only by the rules that call it)
    core = set(_imported_distributions(module_level_only=True))
    assert {"anndata", "numpy", "pandas", "scipy"} <= core
    assert "scanpy" not in core  # imported inside the functions that call it: a table step does not pay ~2 s for it
    for env, pins in _pins().items():
        assert not core - set(pins), f"{env} lacks {sorted(core - set(pins))}"


def test_every_import_of_the_package_is_a_pinned_dependency_in_pyproject():
    declared = _all_pyproject_pins()
    undeclared = {d: sorted(files) for d, files in _imported_distributions().items() if not declared.get(d)}
    assert not undeclared, f"imported by src/cscniche but not pinned (==) in pyproject.toml: {undeclared}"


def test_the_package_dependencies_are_pinned_in_pyproject():
    loose = [n for n, v in _all_pyproject_pins().items() if v is None]
    assert not loose, f"pyproject.toml dependencies without an exact version: {loose}"


def test_every_rule_uses_an_environment_of_envs():
    snakefiles = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    used, problems = set(), []
    for smk in snakefiles:
        text = smk.read_text()
        for m in re.finditer(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)+)", text, re.M):
            name, body = m.groups()
            if not re.search(r"^\s+(script|shell|notebook|wrapper|run):", body, re.M):
                continue
            env = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", body, re.M)
            if env is None:
                problems.append(f"{smk.name}: rule {name} has no conda: environment")
                continue
            path = (smk.parent / env.group(1)).resolve()
            if path.parent != (ROOT / "envs").resolve() or not path.exists():
                problems.append(f"{smk.name}: rule {name} uses {env.group(1)}, not a file of envs/")
            used.add(path.name)
    assert not problems, "\n".join(problems)
    assert "core.yaml" in used


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("scanpy==1.11.5", ("scanpy", "1.11.5")), ("PyYAML>=6", ("pyyaml", None)), ("igraph", ("igraph", None))],
)
def test_requirement_parsing(spec, expected):
    assert _requirement(spec) == expected
