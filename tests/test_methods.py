"""Each scoring kernel against its reference implementation, on dense and sparse input.

Tolerances: scanpy score_genes 1e-6 absolute (scanpy sums float32 sparse rows with float32 rounding; our
float64 product differs by < 1e-6, dense input agrees to 1e-12); pyucell 1e-5 (pyucell returns float32);
decoupler AUCell exact (1e-12) when decoupler's seeded tie-breaking gene order is passed; Spearman (mRNAsi)
vs scipy 1e-12; gseapy ssGSEA/GSVA are run by our wrapper itself, checked against gseapy on the same pseudobulk.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse, stats

from cscniche import methods as m
from cscniche.scoring import pseudobulk_scores


@pytest.fixture(scope="module")
def data():
    """Log-normalised counts with varied depth, and gene sets of 4, 16 and 60 genes."""
    rng = np.random.default_rng(7)
    n, g = 300, 900
    mu = rng.lognormal(-0.5, 1.3, g) * rng.lognormal(0, 0.5, (n, 1))
    counts = rng.poisson(rng.gamma(2.0, mu / 2.0)).astype(np.float32)
    counts[:, 5] = 0  # an empty gene
    a = ad.AnnData(sparse.csr_matrix(counts), var=pd.DataFrame(index=[f"G{i}" for i in range(g)]))
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    names = a.var_names.to_numpy()
    sets = {"S4": list(names[[1, 2, 3, 5]]), "S16": list(rng.choice(names, 16, replace=False)),
            "S60": list(rng.choice(names, 60, replace=False))}  # fmt: skip
    return a, sets


def _idx(a, sets):
    return [a.var_names.get_indexer(s) for s in sets.values()]


@pytest.mark.parametrize("dense", [False, True])
def test_score_genes_matches_scanpy(data, dense):
    a, sets = data
    X = a.X.toarray() if dense else a.X
    b = ad.AnnData(X, var=a.var.copy())
    for seed in (0, 3):
        ours, ctrl = m.score_genes(X, _idx(a, sets), ctrl_size=50, seed=seed)
        for k, genes in enumerate(sets.values()):
            sc.tl.score_genes(b, genes, ctrl_size=50, random_state=seed, use_raw=False)
            np.testing.assert_allclose(ours[:, k], b.obs["score"], rtol=0, atol=1e-12 if dense else 1e-6)
            assert len(ctrl[k]) > 0


def test_score_genes_does_not_touch_the_global_random_state(data):
    a, sets = data
    np.random.seed(11)  # noqa: NPY002 - the legacy global state is what scanpy re-seeds
    before = np.random.random()  # noqa: NPY002
    np.random.seed(11)  # noqa: NPY002
    m.score_genes(a.X, _idx(a, sets), seed=0)
    assert np.random.random() == before  # noqa: NPY002


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("max_rank", [1500, 200])
def test_ucell_matches_pyucell(data, dense, max_rank):
    import pyucell

    a, sets = data
    X = a.X.toarray() if dense else a.X
    b = ad.AnnData(X, var=a.var.copy())
    pyucell.compute_ucell_scores(b, sets, max_rank=max_rank, n_jobs=1)
    ours = m.ucell(X, _idx(a, sets), max_rank=max_rank)
    for k, name in enumerate(sets):
        np.testing.assert_allclose(ours[:, k], b.obs[f"{name}_UCell"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("n_up", [None, 300])
def test_aucell_matches_decoupler(data, dense, n_up):
    import decoupler as dc

    a, sets = data
    nonempty = np.asarray((a.X > 0).sum(axis=0)).ravel() > 0
    a = a[:, nonempty].copy()  # decoupler drops empty genes before ranking
    sets = {k: [g for g in v if g in a.var_names] for k, v in sets.items()}
    X = a.X.toarray() if dense else a.X
    b = ad.AnnData(X, var=a.var.copy())
    net = pd.DataFrame([(k, g) for k, v in sets.items() for g in v], columns=["source", "target"])
    dc.mt.aucell(b, net, tmin=1, n_up=n_up)
    # decoupler breaks ties by a seeded random gene order (decoupler.pp.data._break_ties)
    perm = np.random.default_rng(seed=0).choice(np.arange(a.n_vars), a.n_vars, replace=False)
    tie = np.empty(a.n_vars, dtype=np.int64)
    tie[perm] = np.arange(a.n_vars)
    ours = m.aucell(X, _idx(a, sets), n_up=n_up, tie_order=tie)
    for k, name in enumerate(sets):
        np.testing.assert_allclose(ours[:, k], b.obsm["score_aucell"][name], rtol=0, atol=1e-12)
    # without decoupler's order the ties among zeros differ, but the scores stay close
    plain = m.aucell(X, _idx(a, sets), n_up=n_up)
    assert np.corrcoef(plain[:, 2], ours[:, 2])[0, 1] > 0.95


@pytest.mark.parametrize("dense", [False, True])
def test_spearman_with_weights_matches_scipy(data, dense):
    a, _ = data
    X = a.X.toarray() if dense else a.X
    w = np.random.default_rng(1).normal(size=a.n_vars)
    ours = m.spearman_with_weights(X, w)
    Xd = a.X.toarray()
    ref = np.array([stats.spearmanr(Xd[i], w)[0] for i in range(a.n_obs)])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_detected_genes_and_gene_count_signature(data):
    a, _ = data
    n_det = m.detected_genes(a.X)
    np.testing.assert_array_equal(n_det, (a.X.toarray() > 0).sum(axis=1))
    np.testing.assert_array_equal(m.detected_genes(a.X.toarray()), n_det)
    gcs, top = m.gene_count_signature(a.X, n_det, n_top=50)
    gcs_dense, top_dense = m.gene_count_signature(a.X.toarray(), n_det, n_top=50)
    np.testing.assert_array_equal(top, top_dense)
    np.testing.assert_allclose(gcs, gcs_dense, atol=1e-12)
    assert stats.spearmanr(gcs, n_det)[0] > 0.7  # the genes covarying with gene counts track it


def test_residualise_removes_the_gene_count_trend():
    rng = np.random.default_rng(0)
    n_det = rng.integers(500, 5000, 400)
    score = 0.3 * np.log1p(n_det) + rng.normal(0, 0.05, 400)
    res = m.residualise(score, n_det)
    assert abs(stats.pearsonr(res, np.log1p(n_det))[0]) < 1e-8
    assert abs(stats.pearsonr(score, np.log1p(n_det))[0]) > 0.9


def test_bh_fdr_matches_scipy():
    p = np.random.default_rng(2).random(200) ** 2
    np.testing.assert_allclose(m.bh_fdr(p), stats.false_discovery_control(p), atol=1e-12)


def test_matched_random_sets_stay_in_their_bins():
    rng = np.random.default_rng(0)
    means = rng.lognormal(0, 1, 2000)
    bins = m.expression_bins(means)
    genes = np.array([3, 10, 400, 1999])
    draws = m.matched_random_sets(bins, genes, 100, rng, exclude=genes)
    assert draws.shape == (100, 4)
    np.testing.assert_array_equal(bins[draws], np.broadcast_to(bins[genes], draws.shape))
    assert not np.isin(draws, genes).any()
    assert all(len(set(r)) == 4 for r in draws)


@pytest.mark.parametrize("method", ["ssgsea", "gsva"])
def test_pseudobulk_matches_gseapy_and_keeps_a_four_gene_set(data, method):
    import gseapy

    a, sets = data
    a = a.copy()
    a.obs["group"] = np.where(np.arange(a.n_obs) % 3 == 0, "CSC", np.where(np.arange(a.n_obs) % 3 == 1, "nonCSC", "T"))
    ours = pseudobulk_scores(a, sets, sample="s", methods=[method])
    assert set(ours["signature"]) == set(sets)  # the 4-gene set is not dropped (gseapy min_size=15 would)
    pb = pd.DataFrame(
        {g: np.asarray(a.X[(a.obs["group"] == g).to_numpy()].mean(axis=0)).ravel() for g in ["CSC", "T", "nonCSC"]},
        index=a.var_names,
    )
    pb = pb[pb.sum(axis=1) > 0]
    sets_p = {k: [g for g in v if g in pb.index] for k, v in sets.items()}
    kw = dict(gene_sets=sets_p, min_size=1, max_size=100000, outdir=None, seed=0, threads=1)
    ref = (gseapy.ssgsea(data=pb, no_plot=True, **kw) if method == "ssgsea" else gseapy.gsva(data=pb, **kw)).res2d
    col = "NES" if method == "ssgsea" else "ES"
    ref = ref.set_index(["Name", "Term"])[col].astype(float)
    got = ours.set_index(["group", "signature"])["score"]
    for key, val in got.items():
        assert val == pytest.approx(ref.loc[key], abs=1e-9)
    assert (ours["n_cells"] == 100).all()


def test_rank_kernels_fast_path_equals_the_general_path(data):
    """float32 input takes the bit-pattern fast path; float64 input ranks every entry: both must agree."""
    a, sets = data
    idx = _idx(a, sets)
    X32 = a.X.astype(np.float32)
    X64 = a.X.astype(np.float64)
    np.testing.assert_allclose(m.ucell(X32, idx, max_rank=200), m.ucell(X64, idx, max_rank=200), atol=1e-12)
    np.testing.assert_allclose(m.aucell(X32, idx, n_up=300), m.aucell(X64, idx, n_up=300), atol=1e-12)
    V = m.ucell_transform(X64, max_rank=200)
    np.testing.assert_allclose(
        m.ucell_from_transform(V, idx, max_rank=200), m.ucell(X32, idx, max_rank=200), atol=1e-12
    )
