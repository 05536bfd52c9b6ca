"""The workflow lints clean, dry-runs, and the code is formatted (ruff, snakefmt)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def _run(*cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_snakemake_lint_is_clean():
    res = _run(sys.executable, "-m", "snakemake", "--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr


def test_dry_run_plans_every_output():
    res = _run(sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(ROOT))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    "cmd",
    [
        ("ruff", "check", "src", "workflow", "tests", "benchmarks"),
        ("ruff", "format", "--check", "src", "workflow", "tests", "benchmarks"),
        ("snakefmt", "--check", "Snakefile", "workflow/rules"),
    ],
)
def test_code_style(cmd):
    exe = shutil.which(cmd[0], path=str(Path(sys.executable).parent)) or shutil.which(cmd[0])
    if exe is None:
        pytest.skip(f"{cmd[0]} is not installed (pip install -e '.[dev]')")
    args = [a for a in cmd[1:] if a != "benchmarks" or (ROOT / "benchmarks").exists()]
    res = _run(exe, *args)
    assert res.returncode == 0, res.stdout + res.stderr
