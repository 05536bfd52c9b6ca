"""Potency: CytoTRACE-style gene-count signature (Gulati et al. 2020) and the mRNAsi index (Malta et al. 2018)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from ._common import CHUNK, _as_csr, _clean_chunk, _csr_desc_ranks
from .mean import set_means


def detected_genes(counts) -> np.ndarray:
    """Number of genes with a nonzero count per cell."""
    if sparse.issparse(counts):
        c = counts.tocsr()
        row = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
        return np.bincount(row[c.data != 0], minlength=c.shape[0])
    return np.count_nonzero(np.asarray(counts), axis=1)


def _rank01(x: np.ndarray) -> np.ndarray:
    """Average ranks scaled to [0, 1] (0.5 when all equal)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return np.full(x.size, 0.5)
    r = pd.Series(x).rank(method="average").to_numpy()
    return (r - 1) / (x.size - 1) if r.max() > r.min() else np.full(x.size, 0.5)


def gene_count_signature(X, n_detected: np.ndarray, *, n_top: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """CytoTRACE-style potency: mean expression of the ``n_top`` genes most correlated with the detected-gene count.

    Gulati et al. (Science 2020) found the number of detected genes a cell expresses the strongest single
    correlate of developmental potential, and the genes covarying with it ("gene counts signature", GCS) a
    more robust readout. Returns (GCS score per cell, rank-scaled to [0, 1] within the data; the gene indices).
    The full CytoTRACE additionally smooths the GCS over a cell graph; this is not done here.
    """
    n = X.shape[0]
    y = np.asarray(n_detected, dtype=np.float64)
    yc = y - y.mean()
    if sparse.issparse(X):
        sx = np.asarray(X.sum(axis=0)).ravel()
        sxx = np.asarray(X.multiply(X).sum(axis=0)).ravel()
        sxy = np.asarray(X.T @ yc).ravel()
    else:
        Xd = np.asarray(X, dtype=np.float64)
        sx, sxx, sxy = Xd.sum(axis=0), (Xd * Xd).sum(axis=0), Xd.T @ yc
    var_x = sxx / n - (sx / n) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sxy / n) / np.sqrt(var_x * yc.var())
    r[~np.isfinite(r)] = -np.inf
    top = np.sort(np.argsort(-r, kind="stable")[: min(n_top, X.shape[1])])
    gcs = set_means(X, [top])[:, 0]
    return _rank01(gcs), top


def spearman_with_weights(X, weights: np.ndarray) -> np.ndarray:
    """Spearman correlation of each cell's expression (columns of ``X``) with ``weights`` (one per column).

    Ranks with average ties (all zeros of a cell share one rank), computed on the sparse matrix without a
    dense copy. A cell whose expression is constant gets NaN.
    """
    X = _as_csr(X)
    n_cells, G = X.shape
    w = pd.Series(np.asarray(weights, dtype=np.float64)).rank(method="average").to_numpy()
    wc = w - w.mean()
    sw = np.sqrt((wc * wc).sum())
    out = np.empty(n_cells)
    for i in range(0, n_cells, CHUNK):
        c = _clean_chunk(X[i : i + CHUNK])
        if (c.data < 0).any():
            raise ValueError("spearman_with_weights expects nonnegative expression")
        nnz = np.diff(c.indptr).astype(np.float64)
        nz = G - nnz
        zero_rank = (nz + 1) / 2.0
        # descending rank d among nonzeros -> ascending rank over all genes: nz + (nnz + 1 - d)
        d = _csr_desc_ranks(c.indptr, c.data)
        row = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
        asc = nz[row] + (nnz[row] + 1 - d)
        # centred rank vector: zeros at zero_rank - mean, nonzeros at asc - mean; mean = (G + 1) / 2
        mean = (G + 1) / 2.0
        dev = asc - mean
        z0 = zero_rank - mean
        # sum_g (r_g - mean) wc_g = z0 * sum(wc) + sum_nz (dev - z0) wc_g ; sum(wc) = 0
        cross = np.bincount(row, weights=(dev - z0[row]) * wc[c.indices], minlength=c.shape[0])
        ss = nz * z0**2 + np.bincount(row, weights=dev**2, minlength=c.shape[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i : i + CHUNK] = cross / (np.sqrt(ss) * sw)
    return out
