"""Scoring: GMT parsing, coverage warnings and errors, scanpy equivalence, planted recovery, CSC call."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from conftest import DATA, shared_file
from sklearn.metrics import roc_auc_score

import cscniche as cn
from cscniche import InputError
from cscniche.stemness._score import (
    call_csc,
    check_coverage,
    read_gmt,
    score_signatures,
    signature_coverage,
    stemness_index,
)

GMT = DATA / "genesets/csc_signatures.gmt"


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
    """The default fast engine reproduces scanpy score_genes (same control genes; sparse float32 sums: 1e-6)."""
    a = demo_processed.copy()
    sets = read_gmt(GMT)
    for name, genes in sets.items():
        sc.tl.score_genes(a, genes, ctrl_size=50, score_name="ref", random_state=0, use_raw=False)
        np.testing.assert_allclose(a.obs[f"score_{name}"], a.obs["ref"], rtol=0, atol=1e-6)
    b = demo_processed.copy()
    score_signatures(b, sets, methods=["mean"], mean_engine="scanpy", min_fraction=0.25)
    for name in sets:
        np.testing.assert_allclose(a.obs[f"score_{name}"], b.obs[f"score_{name}"], rtol=0, atol=1e-6)


def test_planted_stem_cells_recovered(demo_processed):
    obs = demo_processed.obs
    mal = obs["malignant"].to_numpy()
    truth = obs["truth_stem"].to_numpy()
    for col in ("stemness", "stemness_pearson", "stemness_mean", "stemness_aucell"):
        assert roc_auc_score(truth[mal], obs[col][mal]) >= 0.95, col
    assert (obs["stemness"] == obs["stemness_pearson"]).all()  # the default index
    # UCell leans on the 4 marker genes (all planted; 18 of the 161 pathway genes are): measured 0.81 with the
    # default sqrt_size weighting of the sets, 0.90 with equal weights
    assert roc_auc_score(truth[mal], obs["stemness_ucell"][mal]) >= 0.78
    csc = obs["csc"].to_numpy()
    assert not csc[~mal].any()
    # the FDR rule: non-planted among the calls stays near or below alpha = 0.1, most planted cells found
    assert obs["truth_stem"][csc].mean() >= 0.9
    assert csc[mal & truth].mean() >= 0.7
    p = obs["stemness_pvalue"].to_numpy()
    assert np.isnan(p[~mal]).all() and (p[mal] > 0).all() and (p[mal] <= 1).all()
    assert np.median(p[mal & ~truth]) > 0.3  # non-planted cells are not significant as a group


def test_quantile_rule_is_kept_as_an_option(demo_processed):
    a = demo_processed.copy()
    n = call_csc(a, rule="quantile", quantile=0.9)
    mal = a.obs["malignant"].to_numpy()
    assert n == pytest.approx(0.1 * mal.sum(), abs=2)
    assert a.obs["truth_stem"][a.obs["csc"]].mean() >= 0.9
    with pytest.raises(ValueError, match="csc.rule"):
        call_csc(a, rule="nope")


def test_every_method_and_potency_column_is_written(demo_processed):
    obs = demo_processed.obs
    sets = list(read_gmt(GMT))
    for prefix in ("score", "ucell", "aucell"):
        for s in sets:
            assert f"{prefix}_{s}" in obs and f"{prefix}_{s}_resid" in obs
    for c in ("stemness_mean", "stemness_ucell", "stemness_aucell", "potency_genes", "potency_gcs", "n_detected",
              "stemness_resid", "stemness_pvalue", "csc_fdr"):  # fmt: skip
        assert c in obs, c
    mal = obs["malignant"].to_numpy()
    x = np.log1p(obs["n_detected"].to_numpy()[mal])
    assert abs(np.corrcoef(obs["stemness_resid"].to_numpy()[mal], x)[0, 1]) < 1e-8
    table = cn.niche.cells_table(demo_processed)
    for c in ("malignant", "stemness_pvalue", "csc_fdr", "ucell_NOTCH", "aucell_NOTCH", "potency_gcs"):
        assert c in table.columns, c


def test_stemness_summary(demo_processed):
    s = demo_processed.uns["cscniche"]["stemness_summary"].iloc[0]
    obs = demo_processed.obs
    assert s["n_malignant"] == obs["malignant"].sum() and s["n_csc"] == obs["csc"].sum()
    assert s["csc_fraction"] == pytest.approx(s["n_csc"] / s["n_malignant"])
    csc = obs["csc"].to_numpy()
    assert s["detected_THY1_csc"] == pytest.approx(obs["detected_THY1"].to_numpy()[csc].mean())
    assert s["detected_THY1_csc"] > s["detected_THY1_noncsc"]
    assert 0 < s["spearman_stemness_mean__stemness_aucell"] <= 1
    pb = demo_processed.uns["cscniche"]["pseudobulk_scores"]
    assert set(pb["method"]) == {"ssgsea", "gsva"} and "CSC_MARKERS" in set(pb["signature"])
    csc_nes = pb[(pb.group == "CSC") & (pb.signature == "CSC_MARKERS")]["score"].iloc[0]
    non_nes = pb[(pb.group == "nonCSC") & (pb.signature == "CSC_MARKERS")]["score"].iloc[0]
    assert csc_nes > non_nes


def test_mrnasi_with_the_published_weights(demo_processed):
    from scipy.stats import spearmanr

    from cscniche.stemness._score import potency, read_mrnasi_weights

    w = read_mrnasi_weights(shared_file("reference/mrnasi_pcbc_stemsig_weights.tsv"))
    assert len(w) > 12000
    a = demo_processed.copy()
    first = list(a.var_names[:300])
    others = [g for g in w.index if g not in set(first)][: a.n_vars - 300]
    a.var_names = first + others  # give the BG genes weighted names
    cols = potency(a, weights=w)
    assert "mrnasi" in cols and a.obs["mrnasi"].min() == 0 and a.obs["mrnasi"].max() == 1
    shared = [g for g in a.var_names if g in w.index]
    x = a[:5, shared].X.toarray()
    ref = [spearmanr(x[i], w.loc[shared].to_numpy())[0] for i in range(5)]
    np.testing.assert_allclose(a.obs["mrnasi_rho"].to_numpy()[:5], ref, atol=1e-12)
    with pytest.raises(ValueError, match="mRNAsi weight"):
        potency(demo_processed.copy(), weights=w.iloc[:10])


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
        cn.stemness.score(a, sample="cut", scoring=cn.ScoringParams(gene_sets=(GMT,), min_fraction_present=0.5))
    cn.stemness.score(
        a.copy(), sample="cut", scoring=cn.ScoringParams(gene_sets=(GMT,))
    )  # the default 0.25 lets 1 of 4 through, with a warning
    none = a[:, [g for g in a.var_names if g != "EPCAM"]].copy()
    with pytest.raises(InputError, match=r"CSC_MARKERS 0/4"):
        cn.stemness.score(none, sample="cut", scoring=cn.ScoringParams(gene_sets=(GMT,), min_fraction_present=0.0))


def test_unknown_stemness_set_is_an_error(demo_processed):
    with pytest.raises(InputError, match="stemness_sets"):
        cn.stemness.score(
            demo_processed.copy(), sample="x", scoring=cn.ScoringParams(gene_sets=(GMT,), stemness_sets=("NOPE",))
        )


def test_phenotype_on_a_gene_the_data_lack_is_not_counted_as_zero(demo_processed):
    """CosMx lacks PROM1 and THY1: a phenotype gated on them is NaN in the summary, not '0 cells'."""
    import pandas as pd

    from cscniche.stemness._score import stemness_summary

    a = demo_processed.copy()
    mal = a.obs["malignant"].to_numpy(dtype=bool)
    a.obs["GONE+"] = pd.array([pd.NA] * a.n_obs, dtype="boolean")
    a.obs["HALF+"] = pd.array(np.where(np.arange(a.n_obs) % 2 == 0, True, pd.NA), dtype="boolean")
    a.uns["cscniche"]["phenotypes"] = ["GONE+", "HALF+"]
    row = stemness_summary(a, sample="demo").iloc[0]
    assert np.isnan(row["n_GONE+"])
    assert row["n_HALF+"] == int((mal & (np.arange(a.n_obs) % 2 == 0)).sum())
