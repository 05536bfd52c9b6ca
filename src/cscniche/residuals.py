"""Signature scores from analytic Pearson residuals of the counts (Lause, Berens & Kobak, Genome Biol 2021).

A cell's residual for gene g is ``(c - mu) / sqrt(mu + mu^2 / theta)`` with ``mu = l_i p_g`` (cell total times
the gene's share of all counts), clipped to ``[-clip, clip]``: the scanpy
``sc.experimental.pp.normalize_pearson_residuals`` transform. The residual measures each gene in units of its
own sampling noise, so lowly expressed signature genes count as much as highly expressed ones, and the library
size is modelled rather than divided out. A set's score is the mean residual of its genes.

Only the residuals of the genes asked for are computed, in blocks of rows: memory is rows-per-block x genes,
never cells x genes (scanpy's transform is dense over the whole matrix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

BLOCK = 1 << 23  # residuals held at once (rows x genes): 64 MB of float64


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
    mu = np.outer(model.lib[rows], model.p[genes])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (c - mu) / np.sqrt(mu + mu * mu / model.theta)
    r[~np.isfinite(r)] = 0.0  # genes (or cells) without counts: no evidence either way
    return np.clip(r, -model.clip, model.clip, out=r)


def set_means(counts, sets: Sequence[Sequence[int]], model: PearsonModel, *, rows: np.ndarray | None = None):
    """Mean residual of each gene set (cells x sets), computed in blocks of rows of at most ``BLOCK`` values."""
    X = counts.tocsr() if sparse.issparse(counts) else np.asarray(counts)
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    sets = [np.asarray(s, dtype=np.int64) for s in sets]
    union = np.unique(np.concatenate(sets)) if sets else np.empty(0, np.int64)
    W = np.zeros((union.size, len(sets)))
    for j, s in enumerate(sets):
        if s.size:
            np.add.at(W[:, j], np.searchsorted(union, s), 1.0 / s.size)
    out = np.empty((rows.size, len(sets)))
    step = max(1, BLOCK // max(union.size, 1))
    for a in range(0, rows.size, step):
        out[a : a + step] = residuals(X, union, model, rows=rows[a : a + step]) @ W
    return out
