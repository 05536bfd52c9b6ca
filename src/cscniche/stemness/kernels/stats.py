"""Statistics of the scores: residuals on detected genes, BH-FDR, matched random sets and empirical p-values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from ..._fdr import bh_fdr  # noqa: F401  (re-exported: cscniche.stemness.kernels.bh_fdr)
from .mean import set_means


def minmax(x: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min), as the mRNAsi index is scaled (NaN kept)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.nanmin(x), np.nanmax(x)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def residualise(score: np.ndarray, n_detected: np.ndarray, *, fit: np.ndarray | None = None) -> np.ndarray:
    """Residual of ``score ~ a + b log1p(n_detected)`` (least squares on the ``fit`` cells, default all).

    Gene count is both a potency signal and a confounder of every signature score; the residual is the
    part of a score that the number of detected genes does not explain.
    """
    y = np.asarray(score, dtype=np.float64)
    x = np.log1p(np.asarray(n_detected, dtype=np.float64))
    fit = np.ones(y.size, dtype=bool) if fit is None else np.asarray(fit, dtype=bool)
    ok = fit & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0:
        return y - np.nanmean(y[ok]) if ok.any() else y
    b, a = np.polyfit(x[ok], y[ok], 1)
    return y - (a + b * x)


def matched_random_sets(
    bins: np.ndarray, genes: Sequence[int], n_sets: int, rng: np.random.Generator, *, exclude: Sequence[int] = ()
) -> np.ndarray:
    """``n_sets`` random gene sets (rows) matched to ``genes`` by expression bin, drawn without replacement.

    Each signature gene is replaced by a gene of the same bin (``bins`` from :func:`expression_bins`) that is
    not in ``exclude``; when a bin has too few genes the neighbouring bins are pooled in.
    """
    genes = np.asarray(genes, dtype=np.int64)
    allowed = np.ones(bins.size, dtype=bool)
    allowed[np.asarray(exclude, dtype=np.int64)] = False
    out = np.empty((n_sets, genes.size), dtype=np.int64)
    for b in np.unique(bins[genes]):
        cols = np.flatnonzero(bins[genes] == b)
        width = 0
        pool = np.flatnonzero(allowed & (bins == b))
        while pool.size < cols.size and width <= bins.max():
            width += 1
            pool = np.flatnonzero(allowed & (np.abs(bins - b) <= width))
        if pool.size < cols.size:
            raise ValueError("too few genes to draw expression-matched random gene sets")
        pick = np.argpartition(rng.random((n_sets, pool.size)), cols.size - 1, axis=1)[:, : cols.size]
        out[:, cols] = pool[pick]
    return out


def _zfit(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale of each column (axis 0) for :func:`_zcols`: median and 1.4826 MAD (the SD when the MAD is 0)."""
    med = np.median(m, axis=0)
    scale = 1.4826 * np.median(np.abs(m - med), axis=0)
    sd = m.std(axis=0)
    return med, np.where(scale > 0, scale, np.where(sd > 0, sd, 1.0))


def _zcols(m: np.ndarray, fitted: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Robust z-scores of each column (axis 0): (x - median) / (1.4826 MAD), the SD when the MAD is 0.

    Robust, so that a stem-like minority does not inflate the scale that the other cells are measured in.
    ``fitted`` (centre, scale from :func:`_zfit` on other cells) measures these cells in those cells' scale.
    """
    med, scale = _zfit(m) if fitted is None else fitted
    return (m - med) / scale


def random_set_pvalues(
    T,
    sets: Sequence[Sequence[int]],
    observed: np.ndarray,
    bins: np.ndarray,
    *,
    n_random: int = 1000,
    offsets: np.ndarray | None = None,
    seed: int = 0,
    block: int = 50,
    means=None,
    weights: np.ndarray | None = None,
    null: dict | None = None,
    return_null: bool = False,
    return_indices: bool = False,
):
    """Empirical p-value per cell of a combined signature index against expression-matched random gene sets.

    ``T`` (cells x genes, the cells to test, e.g. the malignant ones) is the kernel's linear form: the
    log-normalised matrix for the mean-based score, :func:`ucell_transform` for UCell (whose score is affine in
    ``T @ indicator``). ``observed`` (cells x sets) are the sets' scores; ``offsets`` (cells x sets) is
    subtracted from each random set's mean (the control-gene mean of ``score_genes``). The index is the mean
    over sets of the per-set robust z-scores over these cells (median, MAD), re-standardised the same way; the same is done with ``n_random``
    draws of random sets (each signature gene replaced by a gene of its expression bin). The p-value of cell
    i is ``(1 + #{draws with index_i >= observed index_i}) / (1 + n_random)``: how often random genes give the
    cell an index as high, relative to the other cells, as the signature does.

    ``means`` (a function of a list of gene-index sets returning cells x sets) replaces the set means of ``T``
    for kernels that are not linear in a matrix (``T`` is then ignored), e.g. mean Pearson residuals.
    ``weights`` (one per set, default equal) make the index a weighted mean of the per-set z-scores.

    ``return_null=True`` also returns the medians and scales of every standardisation (a dict); given back as
    ``null`` with the same sets, bins, ``n_random`` and ``seed``, they score other cells against these cells'
    scale (the same random sets are drawn), so cells of a large sample can be tested block by block and get the
    p-values they would have as members of the cells the null was fitted on.

    ``return_indices=True`` appends the observed index (cells) and the random-set indices (cells x ``n_random``)
    to the returned tuple: the inputs of the pooled null (:mod:`cscniche.stemness.pooled_null`).
    """
    rng = np.random.default_rng(seed)
    n, k = observed.shape
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    fit = null is None
    if fit:
        null = {"set": [], "index": []}

    def z2(m: np.ndarray, i: int) -> np.ndarray:
        """Per-set then combined robust z-scores; ``i`` numbers the standardisation (0 observed, 1+ draws)."""
        if fit:
            null["set"].append(_zfit(m))
        first = _zcols(m, null["set"][i]) @ w
        if fit:
            null["index"].append(_zfit(first[:, None]))
        return _zcols(first[:, None], null["index"][i])[:, 0]

    obs = z2(np.asarray(observed, dtype=np.float64), 0)
    exclude = np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s in sets]))
    draws = [matched_random_sets(bins, s, n_random, rng, exclude=exclude) for s in sets]
    if means is None:
        T = T.tocsr() if sparse.issparse(T) else np.asarray(T, dtype=np.float64)

        def means(cols):
            return set_means(T, cols)

    exceed = np.zeros(n)
    ctrl = np.empty((n, n_random)) if return_indices else None
    for b0 in range(0, n_random, block):
        b1 = min(n_random, b0 + block)
        cols = [draws[j][b] for b in range(b0, b1) for j in range(k)]  # draw-major, set-minor
        m = means(cols).reshape(n, b1 - b0, k)
        if offsets is not None:
            m = m - np.asarray(offsets)[:, None, :]
        for b in range(b1 - b0):
            z = z2(m[:, b, :], 1 + b0 + b)
            exceed += z >= obs - 1e-12
            if ctrl is not None:
                ctrl[:, b0 + b] = z
    p = (1.0 + exceed) / (1.0 + n_random)
    out = (p, null) if return_null else (p,)
    if return_indices:
        out = (*out, obs, ctrl)
    return out if len(out) > 1 else out[0]
