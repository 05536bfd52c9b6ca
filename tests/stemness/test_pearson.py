"""Pearson-residual signature scores (cscniche.stemness.kernels.pearson) against scanpy's own transform.

Tolerance: float64 counts, so ours and ``sc.experimental.pp.normalize_pearson_residuals`` agree to 1e-10
(the same formula, evaluated in a different order).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

from cscniche.stemness.kernels import pearson as R


def _counts(seed=0, n=300, g=120):
    rng = np.random.default_rng(seed)
    lam = rng.lognormal(-0.5, 1.2, g)[None, :] * rng.lognormal(0, 0.4, n)[:, None]
    c = rng.poisson(lam).astype(np.float64)
    c[:, 7] = 0  # a gene without counts
    c[0, 11] = 500  # far beyond its expectation: clipped
    return c


def _scanpy(c, theta=100.0):
    a = ad.AnnData(c.copy())
    with np.errstate(invalid="ignore", divide="ignore"):
        sc.experimental.pp.normalize_pearson_residuals(a, theta=theta)
    return np.nan_to_num(np.asarray(a.X))


@pytest.mark.parametrize("sparse_input", [False, True])
@pytest.mark.parametrize("theta", [100.0, 5.0])
def test_residuals_match_scanpy(sparse_input, theta):
    c = _counts()
    ref = _scanpy(c, theta)
    X = sparse.csr_matrix(c) if sparse_input else c
    model = R.fit(X, theta=theta)
    genes = np.arange(c.shape[1])
    ours = R.residuals(X, genes, model)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)
    assert np.all(ours[:, 7] == 0)  # a gene without counts has no residual, not NaN
    assert ours[0, 11] == np.sqrt(c.shape[0])  # scanpy's clip, sqrt(n_cells)


@pytest.mark.parametrize("sparse_input", [False, True])
def test_set_means_are_means_of_scanpy_residuals_in_any_block_size(monkeypatch, sparse_input):
    c = _counts(seed=1)
    ref = _scanpy(c)
    X = sparse.csr_matrix(c) if sparse_input else c
    sets = [[0, 5, 9], [3, 3, 4, 60, 119], [7]]
    model = R.fit(X)
    want = np.column_stack([ref[:, s].mean(axis=1) for s in sets])
    np.testing.assert_allclose(R.set_means(X, sets, model), want, rtol=0, atol=1e-10)
    monkeypatch.setattr(R, "BLOCK", 7)  # one or two rows per block: the blocks add up to the same
    rows = np.arange(c.shape[0]) % 3 == 0
    np.testing.assert_allclose(R.set_means(X, sets, model, rows=rows), want[rows], rtol=0, atol=1e-10)
    excess = R.nonzero_excess(X, model, np.flatnonzero(rows))  # shared by many calls in the calibration
    np.testing.assert_allclose(R.set_means(X, sets, model, rows=rows, excess=excess), want[rows], atol=1e-10)


def test_residuals_refuse_normalised_data():
    with pytest.raises(ValueError, match="raw counts"):
        R.fit(sparse.csr_matrix(np.array([[1.0, -0.5], [0.0, 2.0]])))
    with pytest.raises(ValueError, match="no counts"):
        R.fit(np.zeros((3, 4)))


def test_interpolated_zero_part_is_within_1e9_of_exact():
    """The fast path for more than 2 x GRID cells (a spline over cell totals): totals over 3 orders of
    magnitude, 5,000 cells; the spline is within 1e-9 of evaluating every cell."""
    rng = np.random.default_rng(3)
    n, g = 5000, 60
    lib = np.exp(rng.uniform(np.log(200), np.log(200_000), n))
    share = rng.dirichlet(np.full(g, 0.3))
    c = sparse.csr_matrix(rng.poisson(np.outer(lib, share) * rng.gamma(2.0, 0.5, (n, g))).astype(np.float64))
    model = R.fit(c)
    sets = [rng.choice(g, 5, replace=False) for _ in range(40)]
    exact = R.set_means(c, sets, model, exact=True)
    fast = R.set_means(c, sets, model)
    assert n > 2 * R.GRID
    assert np.abs(fast - exact).max() > 0  # the spline did run
    np.testing.assert_allclose(fast, exact, rtol=0, atol=1e-9)
    ref = _scanpy(c.toarray())
    np.testing.assert_allclose(exact, np.column_stack([ref[:, s].mean(axis=1) for s in sets]), rtol=0, atol=1e-9)
