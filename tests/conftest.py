"""Shared fixtures: paths, the real data in ../shared (skipped with a reason when absent), demo data."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the tables shipped with the library (src/cscniche/data), as the config defaults name them (cscniche:<name>)
DATA = ROOT / "src" / "cscniche" / "data"
SHARED = ROOT.parent / "shared" / "data"


def shared_file(rel: str) -> Path:
    """Path of a file in ../shared/data; skip the test, printing why, when it is absent."""
    p = SHARED / rel
    if not p.exists():
        reason = f"shared data not available: {p} is absent (tests on real data need ../shared beside the repo)"
        print(reason)
        pytest.skip(reason)
    return p


def shared_labels(rel: str, column: str):
    """The ``obs[column]`` labels (str Series) of a file in ../shared/data, read backed; skip when absent."""
    import anndata as ad

    a = ad.read_h5ad(shared_file(rel), backed="r")
    try:
        return a.obs[column].astype(str).copy()
    finally:
        a.file.close()


def benchmark_module(name: str):
    """A script of benchmarks/ imported as a module (its simulations are shared with the tests)."""
    import importlib
    import sys

    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def demo_raw():
    """The demo tumour (raw counts), seed 1; a fresh copy per use is the caller's job."""
    from cscniche.demo import make_demo
    from cscniche.stemness._score import read_gmt

    return make_demo(seed=1, gene_sets=read_gmt(DATA / "genesets/csc_signatures.gmt"))


@pytest.fixture(scope="session")
def demo_processed(demo_raw):
    """Demo after QC, normalisation, embedding, marker annotation and scoring (default config)."""
    import cscniche as cn

    adata, _ = cn.preprocess.qc(demo_raw.copy(), sample="demo")
    cn.preprocess.embed(adata, embedding=cn.EmbeddingParams(umap=False))
    cn.preprocess.annotate(adata, markers=DATA / "markers.tsv", compartments=DATA / "compartments.tsv")
    cn.stemness.score(adata, sample="demo", scoring=cn.ScoringParams(gene_sets=(DATA / "genesets/csc_signatures.gmt",)))
    return adata


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow (this repo's Snakefile) in ``workdir``; output captured."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        logging.getLogger("tests").error("snakemake failed:\n%s\n%s", res.stdout[-5000:], res.stderr[-5000:])
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stderr[-5000:]}")
    return res


@pytest.fixture(scope="session")
def demo_defs(demo_processed):
    """The demo with two CSC definitions (the calibrated call and the top decile of stemness)."""
    import numpy as np

    a = demo_processed.copy()
    mal = a.obs["malignant"].to_numpy(dtype=bool)
    s = a.obs["stemness"].to_numpy()
    a.obs["csc_calibrated"] = a.obs["csc"].to_numpy(dtype=bool)
    a.obs["csc_quantile"] = mal & (s >= np.quantile(s[mal], 0.9))
    a.uns["cscniche"] = {**a.uns.get("cscniche", {}), "csc_definitions": ["calibrated", "quantile"]}
    return a
