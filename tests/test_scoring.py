"""Scoring: GMT parsing, coverage warnings and errors, scanpy equivalence, planted recovery, CSC call."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from conftest import ROOT
from sklearn.metrics import roc_auc_score

from cscniche import InputError, stages
from cscniche.scoring import call_csc, check_coverage, read_gmt, signature_coverage, stemness_index

GMT = ROOT / "config/genesets/csc_signatures.gmt"


def test_read_gmt(tmp_path):
    sets = read_gmt(GMT)
    assert list(sets) == ["CSC_MARKERS", "WNT_BETA_CATENIN", "NOTCH", "IL6_JAK_STAT3"]
    assert sets["CSC_MARKERS"] == ["PROM1", "THY1", "CD44", "EPCAM"]
    bad = tmp_path / "bad.gmt"
    bad.write_text("ONLY_NAME\tdesc\n")
    with pytest.raises(ValueError, match="at least one gene"):
        read_gmt(bad)
    dup = tmp_path / "dup.gmt"
    dup.write_text("A\td\tG1\nA\td\tG2\n")
    with pytest.raises(ValueError, match="defined twice"):
        read_gmt(dup)


def test_missing_genes_warn_with_list_and_fraction(caplog):
    cov = signature_coverage(["PROM1", "CD44", "X"], {"CSC_MARKERS": ["PROM1", "THY1", "CD44", "EPCAM"]})
    assert cov.loc[0, "n_present"] == 2 and cov.loc[0, "fraction_present"] == 0.5
    with caplog.at_level(logging.WARNING):
        check_coverage(cov, min_fraction=0.5, sample="s")
    assert "2 of 4 genes present (50%)" in caplog.text and "THY1,EPCAM" in caplog.text
    with pytest.raises(ValueError, match=r"below the minimum fraction.*CSC_MARKERS 2/4 \(missing THY1,EPCAM\)"):
        check_coverage(cov, min_fraction=0.75, sample="s")


def test_scores_equal_scanpy_score_genes(demo_processed):
    a = demo_processed.copy()
    sets = read_gmt(GMT)
    for name, genes in sets.items():
        sc.tl.score_genes(a, genes, ctrl_size=50, score_name="ref", random_state=0, use_raw=False)
        np.testing.assert_allclose(a.obs[f"score_{name}"], a.obs["ref"], rtol=0, atol=1e-12)


def test_planted_stem_cells_recovered(demo_processed):
    obs = demo_processed.obs
    mal = (obs["compartment"] == "malignant").to_numpy()
    auroc = roc_auc_score(obs["truth_stem"][mal], obs["stemness"][mal])
    assert auroc >= 0.95, auroc
    csc = obs["csc"].to_numpy()
    assert not csc[~mal].any()
    assert csc.sum() == pytest.approx(0.1 * mal.sum(), abs=2)
    precision = obs["truth_stem"][csc].mean()
    assert precision >= 0.9, precision


def test_stemness_index_standardises_on_reference():
    obs = pd.DataFrame({"score_A": [0.0, 1.0, 2.0, 10.0], "score_B": [1.0, 1.0, 1.0, 1.0]})
    import anndata as ad

    a = ad.AnnData(np.zeros((4, 1)), obs=obs)
    ref = np.array([True, True, True, False])
    idx = stemness_index(a, ["A", "B"], reference=ref)
    z_a = (obs["score_A"] - 1.0) / np.std([0.0, 1.0, 2.0])
    np.testing.assert_allclose(idx, z_a / 2)


def test_call_csc_without_malignant_cells_warns(caplog):
    import anndata as ad

    obs = pd.DataFrame({"compartment": ["immune"] * 5, "cell_type": ["T"] * 5, "stemness": np.arange(5.0)})
    a = ad.AnnData(np.zeros((5, 1)), obs=obs)
    with caplog.at_level(logging.WARNING):
        assert call_csc(a) == 0
    assert "no malignant cells" in caplog.text
    assert list(a.obs["group"]) == ["T"] * 5


def test_score_stage_stops_below_min_fraction(demo_processed):
    a = demo_processed[:, [g for g in demo_processed.var_names if g not in ("PROM1", "THY1", "CD44")]].copy()
    with pytest.raises(
        InputError,
        match=r"sample 'cut': signatures below the minimum fraction of genes present \(0.5\).*CSC_MARKERS 1/4",
    ):
        stages.score(a, sample="cut", gene_sets=[GMT], min_fraction_present=0.5)
    stages.score(a.copy(), sample="cut", gene_sets=[GMT])  # the default 0.25 lets 1 of 4 through, with a warning
    none = a[:, [g for g in a.var_names if g != "EPCAM"]].copy()
    with pytest.raises(InputError, match=r"CSC_MARKERS 0/4"):
        stages.score(none, sample="cut", gene_sets=[GMT], min_fraction_present=0.0)


def test_unknown_stemness_set_is_an_error(demo_processed):
    with pytest.raises(InputError, match="stemness_sets"):
        stages.score(demo_processed.copy(), sample="x", gene_sets=[GMT], stemness_sets=["NOPE"])
