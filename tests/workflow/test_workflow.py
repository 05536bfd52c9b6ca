"""The whole workflow: demo recovery, output contract, determinism, real data, a failing sample."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_snakemake, shared_file
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.slow

CELL_COLUMNS = {"cell_id", "sample", "cell_type", "compartment", "n_genes", "stemness", "csc"}
NB_COLUMNS = ["sample", "neighbourhood", "group", "immune_type", "observed", "expected", "log2_enrichment", "p", "fdr"]
CP_COLUMNS = ["sample", "gene", "group", "mean_expr", "frac_expr", "log2fc_csc_vs_noncsc", "p", "fdr"]


def _workdir(tmp: Path, sheet: str, **overrides) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "samples.tsv").write_text(sheet)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["samples"] = "samples.tsv"
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp


DEMO_SHEET = (
    "sample\tpath\tformat\tcell_type_key\tpatient\n"
    "demo_p1\tresources/demo/demo_p1.h5ad\th5ad\t\tP1\n"
    "demo_p2\tresources/demo/demo_p2.h5ad\th5ad\ttruth_cell_type\tP2\n"
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    wd = _workdir(tmp_path_factory.mktemp("demo"), DEMO_SHEET)
    run_snakemake(wd, "--configfile", str(wd / "config.yaml"), "--cores", "2")
    return wd


def test_demo_outputs_follow_the_contract(demo_run):
    for s in ("demo_p1", "demo_p2"):
        cells = pd.read_csv(demo_run / f"results/{s}/cells.tsv.gz", sep="\t")
        assert CELL_COLUMNS <= set(cells.columns)
        sets = (
            "CSC_MARKERS",
            "WNT_TARGETS",
            "NOTCH_TARGETS",
            "IL6_STAT3_TUMOUR",
            "CANCERSEA_STEMNESS",
            "DISSOCIATION_IEG",
        )
        assert {f"score_{n}" for n in sets} <= set(cells.columns)
        assert set(cells["compartment"]) <= {"malignant", "candidate", "immune", "stromal", "other"}
        nb = pd.read_csv(demo_run / f"results/{s}/immune_neighbours.tsv", sep="\t")
        assert list(nb.columns[: len(NB_COLUMNS)]) == NB_COLUMNS or set(NB_COLUMNS) <= set(nb.columns)
        assert set(nb["neighbourhood"]) == {"knn", "spatial"}
        cp = pd.read_csv(demo_run / f"results/{s}/checkpoints.tsv", sep="\t")
        assert set(CP_COLUMNS) <= set(cp.columns)
        import anndata as ad

        a = ad.read_h5ad(demo_run / f"results/{s}/scored.h5ad")
        assert {"stemness", "csc", "compartment"} <= set(a.obs.columns)
        # CSC definitions side by side (issue 15): one bool column each, the first is csc
        defs = list(a.uns["cscniche"]["csc_definitions"])
        assert defs == ["calibrated", "phenotype", "quantile"]
        assert (a.obs["csc"] == a.obs["csc_calibrated"]).all()
        summary = pd.read_csv(demo_run / f"results/{s}/stemness_summary.tsv", sep="\t").iloc[0]
        for d in defs:
            assert summary[f"n_csc_{d}"] == a.obs[f"csc_{d}"].sum() > 0, (s, d)
            assert not (a.obs[f"csc_{d}"] & ~a.obs["malignant"]).any()
        assert summary["min_pvalue"] < 1e-5 and summary["subpop_pvalue"] < 0.01
        assert {"immune_neighbours", "checkpoints", "signature_coverage"} <= set(a.uns["cscniche"])
    cohort = pd.read_csv(demo_run / "results/cohort/cells.tsv.gz", sep="\t")
    assert set(cohort["sample"]) == {"demo_p1", "demo_p2"}
    # below scale.max_cells every cell is analysed, so the projected table repeats the analysed values
    for s in ("demo_p1", "demo_p2"):
        cells = pd.read_csv(demo_run / f"results/{s}/cells.tsv.gz", sep="\t").set_index("cell_id")
        every = pd.read_csv(demo_run / f"results/{s}/cells_all.tsv.gz", sep="\t").set_index("cell_id")
        assert list(every.index) == list(cells.index) and every["in_sketch"].all()
        for c in [
            "stemness",
            "stemness_pvalue",
            "csc_fdr",
            "score_NOTCH_TARGETS",
            "pearson_IL6_STAT3_TUMOUR",
            "ucell_CSC_MARKERS",
        ]:
            pd.testing.assert_series_equal(every[c], cells[c], rtol=1e-6, check_names=False)
        for c in ["cell_type", "compartment", "malignant", "csc", "group"]:
            assert (every[c].astype(str) == cells[c].astype(str)).all(), (s, c)
    for t in ("immune_neighbours.tsv", "checkpoints.tsv", "qc.tsv", "signature_coverage.tsv"):
        assert set(pd.read_csv(demo_run / "results/cohort" / t, sep="\t")["sample"]) == {"demo_p1", "demo_p2"}


def test_demo_planted_truth_is_recovered(demo_run):
    for s in ("demo_p1", "demo_p2"):
        cells = pd.read_csv(demo_run / f"results/{s}/cells.tsv.gz", sep="\t")
        mal = cells["compartment"] == "malignant"
        assert (mal == (cells["truth_compartment"] == "malignant")).mean() > 0.99
        auroc = roc_auc_score(cells.loc[mal, "truth_stem"], cells.loc[mal, "stemness"])
        assert auroc >= 0.95, (s, auroc)
        nb = pd.read_csv(demo_run / f"results/{s}/immune_neighbours.tsv", sep="\t")
        # the calibrated call (first definition) under the default patch-regrowth null
        sp = nb[(nb.neighbourhood == "spatial") & (nb.group == "CSC") & (nb.definition == "calibrated")]
        assert set(sp["null"]) == {"patch_regrowth"}
        sp = sp.set_index("immune_type")
        # the patch-regrowth null keeps CSC patches intact (one slide is few independent observations): measured
        # Macrophage log2 1.64/1.49, FDR 0.001/0.0005, MDSC 1.44/1.44, FDR 0.009/0.002 (demo_p1/demo_p2); the
        # field-shift null gave Macrophage FDR 0.028/0.036, MDSC 0.065/0.043
        assert sp.loc["Macrophage", "log2_enrichment"] > 0.8 and sp.loc["Macrophage", "fdr"] < 0.05, s
        assert sp.loc["MDSC_like", "log2_enrichment"] > 0.8 and sp.loc["MDSC_like", "fdr"] < 0.05, s
        for kept_out in ("T_CD8", "NK"):
            assert sp.loc[kept_out, "log2_enrichment"] < -1 and sp.loc[kept_out, "fdr"] < 0.05, (s, kept_out)
        assert sp.loc["B", "fdr"] > 0.05  # B cells sit in a follicle far from every malignant cell


def test_two_runs_give_identical_tables_one_job_per_sample_or_per_step(demo_run, tmp_path):
    """demo_run ran each demo sample as one job (rule sample_steps: the default for small samples); this run takes
    one job per step (one_job_below_mb: 0; embed then has 2 threads): every table is the same, byte for byte."""
    wd = _workdir(tmp_path / "again", DEMO_SHEET)
    cfg = yaml.safe_load((wd / "config.yaml").read_text())
    cfg["one_job_below_mb"] = 0
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake(wd, "--configfile", str(wd / "config.yaml"), "--cores", "2")
    for s in ("demo_p1", "demo_p2"):  # which rules made them: the steps' timings of sample_steps, or each rule's log
        assert (demo_run / f"logs/{s}/steps.tsv").is_file() and not (
            demo_run / f"logs/{s}/score.benchmark.tsv"
        ).exists()
        assert (wd / f"logs/{s}/score.benchmark.tsv").is_file() and not (wd / f"logs/{s}/steps.tsv").exists()
    tables = sorted(
        str(p.relative_to(demo_run))
        for p in (demo_run / "results").rglob("*.tsv*")
        if "report" not in p.parts  # software versions, the config
    )
    assert (
        len(tables) > 40 and "results/demo_p1/cells.tsv.gz" in tables and "results/cohort/crosstalk_test.tsv" in tables
    )
    for rel in tables:
        assert filecmp.cmp(demo_run / rel, wd / rel, shallow=False), rel


def _f1(called, label) -> float:
    called, label = pd.Series(called).to_numpy(bool), pd.Series(label).to_numpy(bool)
    return 2 * int((called & label).sum()) / max(1, called.sum() + label.sum())


def test_real_data_wu_and_cosmx(tmp_path):
    import anndata as ad

    wu = shared_file("tumour/wu2021_tnbc_CID4465.h5ad")
    cosmx = shared_file("spatial/cosmx_lung_subset.h5ad")
    sheet = f"sample\tpath\tcell_type_key\nwu\t{wu}\tcelltype_major\ncosmx\t{cosmx}\tcell_type\n"
    # both samples are analysed on a 1,000-cell sketch (scale.max_cells) and every cell is then projected
    wd = _workdir(tmp_path, sheet, qc={"min_genes": 20, "min_counts": 20}, scale={"max_cells": 1000})
    run_snakemake(wd, "--configfile", str(wd / "config.yaml"), "--cores", "2")
    for s in ("wu", "cosmx"):
        for f in ("cells.tsv.gz", "immune_neighbours.tsv", "checkpoints.tsv", "scored.h5ad", "qc.tsv"):
            assert (wd / "results" / s / f).stat().st_size > 0
        cells = pd.read_csv(wd / f"results/{s}/cells.tsv.gz", sep="\t")
        # CSC only among (CNV-confirmed) malignant cells, each with its FDR against random gene sets
        assert not cells.loc[~cells["malignant"].astype(bool), "csc"].any()
        assert cells.loc[cells["malignant"].astype(bool), "csc_fdr"].between(0, 1).all()
    wu_cells = pd.read_csv(wd / "results/wu/cells.tsv.gz", sep="\t")
    assert set(wu_cells.loc[wu_cells.compartment == "malignant", "cell_type"]) == {"Cancer Epithelial"}
    called, label = wu_cells["malignant"].astype(bool), wu_cells["cell_type"] == "Cancer Epithelial"
    tp = int((called & label).sum())
    f1 = 2 * tp / (called.sum() + label.sum())
    assert f1 >= 0.9, f1  # the CNV-confirmed malignant call agrees with the author label
    # the cells outside the sketch: author labels and the malignant call transferred from the sketch
    n_qc = int(pd.read_csv(wd / "results/wu/qc.tsv", sep="\t")["n_cells_out"].iloc[0])
    every = pd.read_csv(wd / "results/wu/cells_all.tsv.gz", sep="\t").set_index("cell_id")
    assert len(wu_cells) == 1000 and len(every) == n_qc > 1000 and every["in_sketch"].sum() == 1000
    author = ad.read_h5ad(wu).obs["celltype_major"].astype(str)
    out = every[~every["in_sketch"]]
    agree = (out["cell_type"].astype(str) == author.loc[out.index]).mean()
    mal_f1 = _f1(out["malignant"].astype(bool), author.loc[out.index] == "Cancer Epithelial")
    print(
        f"Wu cells outside the 1,000-cell sketch ({len(out)}): author label agreement {agree:.3f}, malignant F1 {mal_f1:.3f}"
    )
    assert agree >= 0.9 and mal_f1 >= 0.85, (agree, mal_f1)
    assert not every.loc[~every["malignant"].astype(bool), "csc"].any()
    log = (wd / "logs/cosmx/score.log").read_text()
    assert "CSC_MARKERS: 2 of 4 genes present (50%); missing: PROM1,THY1" in log
    cov = pd.read_csv(wd / "results/cosmx/signature_coverage.tsv", sep="\t").set_index("signature")
    assert cov.loc["CSC_MARKERS", "missing"] == "PROM1,THY1"
    nb = pd.read_csv(wd / "results/cosmx/immune_neighbours.tsv", sep="\t")
    assert set(nb["neighbourhood"]) == {"knn", "spatial"}
    cp = pd.read_csv(wd / "results/cosmx/checkpoints.tsv", sep="\t")
    assert "CD200" not in set(cp["gene"]) and "CD274" in set(cp["gene"])
    assert "HLA-A" in set(cp["gene"])  # the panel's HLA.A, harmonised at load


def test_bad_sample_fails_with_one_line_and_no_output(tmp_path):
    import anndata as ad
    import numpy as np
    import scanpy as sc

    a = ad.AnnData(np.random.default_rng(0).poisson(3, (60, 50)).astype(np.float32))
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    wd = tmp_path / "bad"
    wd.mkdir()
    a.write_h5ad(wd / "lognorm.h5ad")
    _workdir(wd, "sample\tpath\nlognorm\tlognorm.h5ad\n")
    res = run_snakemake(wd, "--configfile", str(wd / "config.yaml"), "--cores", "1", check=False)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR: ")]
    assert lines == [
        f"ERROR: sample 'lognorm', file 'lognorm.h5ad': no raw counts found (X: the values look log-normalised "
        f"(non-integers, max {a.X.max():.2f})); give the unnormalised integer count matrix"
    ]
    assert not (wd / "results/lognorm/intermediate/loaded.h5ad").exists()
    shutil.rmtree(wd)


def test_duplicate_sample_ids_are_refused(tmp_path):
    wd = _workdir(tmp_path, "sample\tpath\na\tx.h5ad\na\ty.h5ad\n")
    res = run_snakemake(wd, "--configfile", str(wd / "config.yaml"), "-n", check=False)
    assert res.returncode != 0 and "duplicated sample IDs ['a']" in res.stdout + res.stderr
