"""The workflow lints clean, dry-runs, and the code is formatted (ruff, snakefmt)."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize("one_job", [True, False])
@pytest.mark.parametrize("on", [False, True])
def test_squidpy_enrichment_is_opt_in(on, one_job):
    # squidpy's nhood_enrichment permutes every label (anti-conservative for patchy CSC, issue 16) and costs
    # ~17 s per small sample (issue 18): scheduled only with neighbours.squidpy_enrichment, as its own job or as
    # a step of rule sample_steps (the demo's samples are small: one job each unless one_job_below_mb is 0)
    res = _run(
        sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(ROOT), "--forceall",
        "--config", f"neighbours={{'squidpy_enrichment': {on}}}", f"one_job_below_mb={100 if one_job else 0}",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = [ln.split()[0] for ln in res.stdout.splitlines() if ln.strip().startswith("nhood_enrichment ")]
    fused = [ln.split()[0] for ln in res.stdout.splitlines() if ln.strip().startswith("sample_steps ")]
    assert bool(jobs) == (on and not one_job) and bool(fused) == one_job, res.stdout[-2000:]
    assert ("results/demo_p1/nhood_enrichment.tsv" in res.stdout) == on, res.stdout[-2000:]


@pytest.mark.parametrize("on", [False, True])
def test_per_sample_pdfs_follow_the_config(on):
    # per-sample PDFs cost ~8 s of drawing per sample (issue 18): outputs of plot_sample only with
    # figures.sample_pdf; cohort PDFs always
    res = _run(
        sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(ROOT), "--forceall",
        "--config", f"figures={{'sample_pdf': {on}}}", "--printshellcmds", "--detailed-summary",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    outputs = [ln.split("\t")[0] for ln in res.stdout.splitlines()]
    assert "results/cohort/figures/composition.pdf" in outputs
    sample_pdfs = [o for o in outputs if re.fullmatch(r"results/[^/]+/figures/umap\.pdf", o) and "cohort" not in o]
    sample_pngs = [o for o in outputs if re.fullmatch(r"results/[^/]+/figures/umap\.png", o)]
    assert sample_pngs and len(sample_pdfs) == (len(sample_pngs) if on else 0), outputs[:50]
