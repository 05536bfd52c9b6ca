"""Signature scores from analytic Pearson residuals of the counts (Lause, Berens & Kobak, Genome Biol 2021).

A cell's residual for gene g is ``(c - mu) / sqrt(mu + mu^2 / theta)`` with ``mu = l_i p_g`` (cell total times
the gene's share of all counts), clipped to ``[-clip, clip]``: the scanpy
``sc.experimental.pp.normalize_pearson_residuals`` transform. The residual measures each gene in units of its
own sampling noise, so lowly expressed signature genes count as much as highly expressed ones, and the library
size is modelled rather than divided out. A set's score is the mean residual of its genes.

Only the residuals of the genes asked for are computed, and set means never form a dense residual matrix
(see :func:`set_means`): memory scales with the nonzero counts, not cells x genes (scanpy's transform is dense).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse
from scipy.interpolate import CubicSpline

from . import _methods as _m

BLOCK = 1 << 23  # values held at once by a block of rows (rows x genes, or rows x their nonzeros)
GRID = 1024  # cell totals at which the zero-count part is evaluated for the spline


@dataclass(frozen=True)
class PearsonModel:
    """Cell totals ``lib``, gene shares ``p`` (summing to 1), overdispersion ``theta`` and the clip value."""

    lib: np.ndarray
    p: np.ndarray
    theta: float
    clip: float


def fit(counts, *, theta: float = 100.0, clip: float | None = None) -> PearsonModel:
    """The null model of the residuals from raw ``counts`` (cells x genes); ``clip`` defaults to sqrt(cells)."""
    if theta <= 0:
        raise ValueError("theta must be positive")
    X = counts.tocsr() if sparse.issparse(counts) else np.asarray(counts)
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    genes = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
    total = genes.sum()
    if not total > 0:
        raise ValueError("the count matrix has no counts")
    if (sparse.issparse(X) and X.nnz and X.data.min() < 0) or (not sparse.issparse(X) and X.size and X.min() < 0):
        raise ValueError("Pearson residuals need raw counts; the matrix has negative values")
    return PearsonModel(lib, genes / total, float(theta), float(np.sqrt(X.shape[0]) if clip is None else clip))


def residuals(counts, genes: Sequence[int], model: PearsonModel, *, rows: np.ndarray | None = None) -> np.ndarray:
    """Dense (cells x len(genes)) residuals of the columns ``genes`` (of the cells ``rows``, default all)."""
    genes = np.asarray(genes, dtype=np.int64)
    X = counts.tocsr() if sparse.issparse(counts) else np.asarray(counts)
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    c = X[rows][:, genes]
    c = c.toarray() if sparse.issparse(c) else np.asarray(c)
    return _resid(c, np.outer(model.lib[rows], model.p[genes]), model)


def _resid(c, mu: np.ndarray, model: PearsonModel) -> np.ndarray:
    """Clipped residual of count(s) ``c`` at expectation ``mu``; 0 where ``mu`` is 0 (no evidence either way)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (c - mu) / np.sqrt(mu + mu * mu / model.theta)
    r[~np.isfinite(r)] = 0.0
    return np.clip(r, -model.clip, model.clip, out=r)


def _r0(mu: np.ndarray, model: PearsonModel) -> np.ndarray:
    """Residual of a zero count at expectation ``mu`` (clipped)."""
    return _resid(0.0, mu, model)


@numba.njit(parallel=True, cache=True)
def _zero_sums(lib, pu, wptr, wset, wval, n_sets, theta, clip):  # pragma: no cover - compiled by numba
    out = np.zeros((lib.size, n_sets))
    for i in numba.prange(lib.size):
        for j in range(pu.size):
            mu = lib[i] * pu[j]
            if mu <= 0.0:
                continue
            r = max(-mu / np.sqrt(mu + mu * mu / theta), -clip)
            for k in range(wptr[j], wptr[j + 1]):
                out[i, wset[k]] += r * wval[k]
    return out


def _zero_part(lib: np.ndarray, union: np.ndarray, W: np.ndarray, model: PearsonModel, exact: bool | None):
    """Per cell and set, the mean residual the set's genes would have if all were zero.

    Exact: one fused pass over cells x genes of the sets (numba). It is also a smooth function of the cell total
    alone: unless ``exact`` (default: exact for at most 4 x ``GRID`` cells) it is evaluated at ``GRID`` totals
    evenly spaced in log and interpolated with a cubic spline (error < 1e-9, tested), which makes the 1000
    random sets of the calibration on a large sample cost O(nonzeros), not O(cells x genes).
    """
    pos = lib > 0
    if exact is None:
        exact = lib.size <= 4 * GRID
    if not exact and pos.any() and np.ptp(np.log(lib[pos])) > 0:
        out = np.zeros((lib.size, W.shape[1]))
        u = np.log(lib[pos])
        grid = np.linspace(u.min(), u.max(), GRID)
        out[pos] = CubicSpline(grid, _r0(np.outer(np.exp(grid), model.p[union]), model) @ W, axis=0)(u)
        return out
    Wr = sparse.csr_matrix(W)
    return _zero_sums(
        np.ascontiguousarray(lib, dtype=np.float64), np.ascontiguousarray(model.p[union], dtype=np.float64),
        Wr.indptr, Wr.indices, Wr.data, W.shape[1], model.theta, model.clip,
    )  # fmt: skip


def nonzero_excess(counts, model: PearsonModel, rows: np.ndarray | None = None) -> sparse.csr_matrix:
    """Sparse (rows x genes), pattern of the counts: residual minus the residual a zero count would have."""
    X = counts.tocsr() if sparse.issparse(counts) else sparse.csr_matrix(np.asarray(counts))
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows)
    c = X[rows]
    c.sort_indices()
    mu = np.repeat(model.lib[rows], np.diff(c.indptr)) * model.p[c.indices]
    return sparse.csr_matrix((_resid(c.data, mu, model) - _r0(mu, model), c.indices, c.indptr), shape=c.shape)


def set_means(
    counts,
    sets: Sequence[Sequence[int]],
    model: PearsonModel,
    *,
    rows: np.ndarray | None = None,
    exact: bool | None = None,
    excess: sparse.csr_matrix | None = None,
) -> np.ndarray:
    """Mean residual of each gene set (cells x sets), without a dense residual matrix.

    A set's residual sum splits into the residuals its genes would have at zero counts (a function of the cell
    total, see :func:`_zero_part`, which says when it is interpolated) plus, over the cell's nonzero counts only,
    :func:`nonzero_excess`: a sparse matrix with the pattern of the counts, summed per set by
    :func:`cscniche.stemness.kernels._methods.set_means`. Memory and time scale with the nonzeros. ``excess`` (of these ``rows``)
    may be passed in when many calls share it (the random sets of the calibration); otherwise it is built in
    blocks of rows.
    """
    n_all = counts.shape[0]
    rows = np.arange(n_all) if rows is None else np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    sets = [np.asarray(s, dtype=np.int64) for s in sets]
    union = np.unique(np.concatenate(sets)) if sets else np.empty(0, np.int64)
    W = np.zeros((union.size, len(sets)))
    for j, s in enumerate(sets):
        if s.size:
            np.add.at(W[:, j], np.searchsorted(union, s), 1.0 / s.size)
    out = _zero_part(model.lib[rows], union, W, model, exact)
    if excess is not None:
        return out + _m.set_means(excess, sets)
    X = counts.tocsr() if sparse.issparse(counts) else sparse.csr_matrix(np.asarray(counts))
    step = max(1, BLOCK // max(int(np.diff(X.indptr).max(initial=1)), 1))
    for a in range(0, rows.size, step):
        out[a : a + step] += _m.set_means(nonzero_excess(X, model, rows[a : a + step]), sets)
    return out
