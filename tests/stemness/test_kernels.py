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

from cscniche.stemness._score import pseudobulk_scores
from cscniche.stemness.kernels import _common
from cscniche.stemness.kernels import _methods as m


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
    p[[3, 50]] = p[7]  # ties
    np.testing.assert_allclose(m.bh_fdr(p), stats.false_discovery_control(p), atol=1e-12)
    # NaN: kept, and not counted among the tests; the shape is kept
    with_nan = np.r_[p[:100], np.nan, p[100:]].reshape(3, 67)
    q = m.bh_fdr(with_nan)
    assert q.shape == (3, 67) and np.isnan(q.ravel()[100])
    np.testing.assert_allclose(np.delete(q.ravel(), 100), stats.false_discovery_control(p), atol=1e-12)


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


def _ucell_reference(Xd: np.ndarray, sets, max_rank: int):
    """UCell row by row with scipy: rankdata (average ties) of the finite nonzero values, descending; zeros,
    NaN and inf rank ``max_rank``. Returns the scores and the ``max(max_rank - rank, 0)`` matrix."""
    scores = np.zeros((Xd.shape[0], len(sets)))
    gain = np.zeros(Xd.shape)
    for i, x in enumerate(Xd):
        ok = np.isfinite(x) & (x != 0)
        r = np.full(x.size, np.inf)
        r[ok] = stats.rankdata(-x[ok], method="average")
        gain[i] = np.maximum(max_rank - r, 0.0)
        for k, s in enumerate(sets):
            n = len(s)
            u = np.minimum(r[s], max_rank).sum() - n * (n + 1) / 2.0
            scores[i, k] = max(1.0 - u / (n * max_rank - n * (n + 1) / 2.0), 0.0)
    return scores, gain


@pytest.fixture(scope="module")
def awkward():
    """CSR with ties, explicit zeros, NaN, +-inf, negative values, a duplicate entry, an empty row and a row
    whose stored entries are all zero or NaN."""
    rng = np.random.default_rng(3)
    n, g = 60, 80
    Xd = rng.choice([0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 3.25, -1.0, -0.5], size=(n, g))
    Xd[rng.random((n, g)) < 0.05] = np.nan
    Xd[2, 3], Xd[4, 5], Xd[6, 7] = np.inf, -np.inf, np.nan
    Xd[0] = 0.0
    Xd[1] = 0.0
    Xd[1, :10] = np.nan
    stored = (Xd != 0) | (rng.random((n, g)) < 0.2)  # NaN != 0; the extra entries are explicit zeros
    stored[0] = False  # row 0: empty
    stored[1] = True  # row 1: explicit zeros and NaN only
    rows, cols = np.nonzero(stored)
    vals = Xd[rows, cols]
    # entry (9, 11) stored twice as 0.75: duplicates add up, as in X.toarray() (1.5 ties with other 1.5s)
    keep = ~((rows == 9) & (cols == 11))
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    at = np.searchsorted(rows * g + cols, 9 * g + 11)
    rows, cols, vals = np.insert(rows, at, [9, 9]), np.insert(cols, at, [11, 11]), np.insert(vals, at, [0.75, 0.75])
    Xd[9, 11] = 1.5
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    X = sparse.csr_matrix((vals, cols, indptr), shape=(n, g))
    assert X.nnz == vals.size and X.indptr[1] == 0 and (X.data == 0).sum() > n  # explicit zeros are stored
    assert not X.has_canonical_format
    np.testing.assert_array_equal(X.toarray(), Xd)
    sets = [[3, 5, 7], [11], list(range(0, 80, 3)), list(range(10)), [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]]
    return X, Xd, sets


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("max_rank", [5, 30, 200])
@pytest.mark.parametrize("scan_max", [0, 10**9])
def test_ucell_kernel_matches_rankdata_per_row(awkward, dtype, max_rank, scan_max, monkeypatch):
    """The numba UCell kernels against scipy rankdata row by row (tolerance 1e-12), on both of the kernel's
    paths (sorted row + binary search, scan per set gene); zeros, explicit zeros, NaN and inf are not ranked,
    negative values are ranked below the positive ones, duplicates add up, empty rows score 0."""
    X, Xd, sets = awkward
    X = X.astype(dtype)
    before = X.copy()
    monkeypatch.setattr(_common, "_SCAN_MAX", scan_max)
    ref, ref_gain = _ucell_reference(Xd.astype(dtype), sets, max_rank)
    got = m.ucell(X, sets, max_rank=max_rank)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.ucell(Xd.astype(dtype), sets, max_rank=max_rank), ref, rtol=0, atol=1e-12)
    assert (got[0] == 0).all() and (got[1] == 0).all()  # the empty row and the row of zeros / NaN
    V = m.ucell_transform(X, max_rank=max_rank)
    np.testing.assert_allclose(V.toarray(), ref_gain, rtol=0, atol=1e-12)
    assert (V.data > 0).all() and V.has_sorted_indices
    np.testing.assert_allclose(m.ucell_from_transform(V, sets, max_rank=max_rank), ref, rtol=0, atol=1e-12)
    # the input is not modified (its duplicate entry is summed in a copy)
    np.testing.assert_array_equal(X.data, before.data)
    np.testing.assert_array_equal(X.indices, before.indices)
    assert m.ucell(X[:0], sets, max_rank=max_rank).shape == (0, len(sets))
    assert (m.ucell(sparse.csr_matrix(X.shape, dtype=dtype), sets, max_rank=max_rank) == 0).all()


@pytest.mark.parametrize("duplicate", [True, False])
def test_ucell_takes_unsorted_indices_without_a_copy(awkward, duplicate):
    """Unsorted column indices (as after some sparse products) are ranked as they are; a duplicate entry is
    found without sorting and summed in a copy."""
    X, Xd, sets = awkward
    if not duplicate:
        X = sparse.csr_matrix(Xd)
    rev = np.concatenate([np.arange(X.indptr[i + 1] - 1, X.indptr[i] - 1, -1) for i in range(X.shape[0])])
    Xu = sparse.csr_matrix((X.data[rev], X.indices[rev], X.indptr.copy()), shape=X.shape)
    assert not Xu.has_sorted_indices
    assert np.shares_memory(m._rank_csr(Xu).data, Xu.data) is not duplicate
    ref, ref_gain = _ucell_reference(Xd, sets, 30)
    np.testing.assert_allclose(m.ucell(Xu, sets, max_rank=30), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.ucell_transform(Xu, max_rank=30).toarray(), ref_gain, rtol=0, atol=1e-12)


def test_ucell_rejects_gene_indices_out_of_range(awkward):
    X, _, _ = awkward
    with pytest.raises(ValueError, match="out of range"):
        m.ucell(X, [[1, 2], [-1, 3]])
    with pytest.raises(ValueError, match="out of range"):
        m.ucell(X, [[X.shape[1]]])


def _aucell_reference(Xd: np.ndarray, sets, n_up: int, key: np.ndarray) -> np.ndarray:
    """AUCell row by row with scipy: rankdata (ordinal) of the negated finite nonzero values laid out in tie-key
    order, then the zeros (and NaN, inf) after them in tie-key order; AUC = sum(max(n_up - rank, 0)) / max."""
    order = np.argsort(key, kind="stable")  # genes in tie-key order
    out = np.zeros((Xd.shape[0], len(sets)))
    for i, x in enumerate(Xd):
        xo = x[order]
        ok = np.isfinite(xo) & (xo != 0)
        r = np.empty(x.size)
        r[order[ok]] = stats.rankdata(-xo[ok], method="ordinal")
        r[order[~ok]] = ok.sum() + 1 + np.arange((~ok).sum())
        for k, s in enumerate(sets):
            mm = min(len(s), n_up - 1)
            out[i, k] = np.maximum(n_up - r[s], 0.0).sum() / (n_up * mm - mm * (mm + 1) / 2.0)
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_up", [3, 12, 40, 79])
@pytest.mark.parametrize("scan_max", [0, 10**9])
def test_aucell_kernel_matches_rankdata_per_row(awkward, dtype, n_up, scan_max, monkeypatch):
    """The numba AUCell kernel against scipy rankdata row by row (tolerance 1e-12), on both of its paths
    (sorted row + binary search, scan per set gene), with the default and a shuffled tie order: ties, explicit
    zeros, NaN, +-inf, negative values (ranked below the positive values, above the zeros), a duplicate entry
    (summed), an empty row, a row of zeros / NaN, rows with fewer than ``n_up`` values; dense input too."""
    X, Xd, sets = awkward
    X = X.astype(dtype)
    monkeypatch.setattr(_common, "_SCAN_MAX", scan_max)
    sets = sets + [[0, 0, 1]]  # a gene twice in a set counts twice (as its weight 2)
    for key in (None, np.random.default_rng(5).permutation(X.shape[1])):
        ref = _aucell_reference(Xd.astype(dtype), sets, n_up, np.arange(X.shape[1]) if key is None else key)
        np.testing.assert_allclose(m.aucell(X, sets, n_up=n_up, tie_order=key), ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(m.aucell(Xd.astype(dtype), sets, n_up=n_up, tie_order=key), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scan_max", [0, 10**9])
def test_aucell_kernel_matches_rankdata_on_log_counts(data, scan_max, monkeypatch):
    """Log-normalised counts (many ties among the low counts, rows with more and fewer values than ``n_up``)
    with explicit zeros and NaN added: the kernel equals the scipy reference to 1e-12."""
    a, sets = data
    X = a.X.astype(np.float32).tocsr().copy()
    X.data[::97] = 0.0  # explicit zeros
    X.data[::211] = np.nan
    Xd = X.toarray()
    key = np.random.default_rng(1).permutation(X.shape[1])
    monkeypatch.setattr(_common, "_SCAN_MAX", scan_max)
    nnz = np.diff(X.indptr)
    mid = int(np.median(nnz)) + 1
    assert (nnz < mid - 1).any() and (nnz >= mid - 1).any()
    for n_up in (45, mid, m.aucell_n_up(X.shape[1])):
        ref = _aucell_reference(Xd, _idx(a, sets), n_up, key)
        np.testing.assert_allclose(m.aucell(X, _idx(a, sets), n_up=n_up, tie_order=key), ref, rtol=0, atol=1e-12)


def test_aucell_rejects_gene_indices_out_of_range(awkward):
    X, _, _ = awkward
    with pytest.raises(ValueError, match="out of range"):
        m.aucell(X, [[1, 2], [-1, 3]])
    assert m.aucell(X[:0], [[1, 2]]).shape == (0, 1)
