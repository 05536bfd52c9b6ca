"""The ``mean`` method: Seurat/scanpy ``score_genes`` (set mean minus expression-binned control genes),
reproducing scanpy's control-gene draw exactly for the same seed; set means in one numba pass over CSR rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from ._common import set_weights


def _csr_set_sums(indptr, indices, data, gptr, gset, gw, n_sets):  # pragma: no cover - compiled by numba
    n = indptr.size - 1
    out = np.zeros((n, n_sets))
    for i in numba.prange(n):
        for j in range(indptr[i], indptr[i + 1]):
            g = indices[j]
            for k in range(gptr[g], gptr[g + 1]):
                out[i, gset[k]] += data[j] * gw[k]
    return out


def set_means(X, sets: Sequence[Sequence[int]]) -> np.ndarray:
    """Mean expression of each gene set per cell (cells x sets, float64).

    Sparse input: one pass over the stored values of ``X`` (a numba kernel over CSR rows, parallel over
    cells; each value is added to the sets its gene belongs to), no copy of the matrix; genes outside
    every set cost a single lookup. Equal to ``X @ W`` (W: genes x sets, 1/|set|) up to summation order.
    """
    W = set_weights(X.shape[1], sets)
    if sparse.issparse(X):
        X = X.tocsr()
        if _HAVE_NUMBA and X.nnz:
            Wr = W.tocsr()
            return _csr_set_sums(
                X.indptr, X.indices, X.data, Wr.indptr, Wr.indices, Wr.data.astype(np.float64), len(sets)
            )
        out = X @ W
        return out.toarray() if sparse.issparse(out) else np.asarray(out, dtype=np.float64)
    return np.asarray(np.asarray(X, dtype=np.float64) @ W)


def gene_means(X) -> np.ndarray:
    """Mean of each gene over the cells, computed as scanpy ``score_genes`` does (for identical bins)."""
    if sparse.issparse(X):
        return np.asarray(X.sum(axis=0, dtype="float64")).ravel() / X.shape[0]
    return np.asarray(np.nanmean(X, axis=0)).ravel()


def expression_bins(means: np.ndarray, n_bins: int = 25) -> np.ndarray:
    """scanpy's expression bins: ``rank(method='min') // round(n_genes / (n_bins - 1))``."""
    n_items = int(np.round(len(means) / (n_bins - 1)))
    return (pd.Series(means).rank(method="min").to_numpy() // n_items).astype(np.int64)


def control_genes(
    means: np.ndarray, genes: Sequence[int], *, ctrl_size: int = 50, n_bins: int = 25, seed: int = 0
) -> np.ndarray:
    """scanpy's control genes for ``genes`` (indices): ``ctrl_size`` per expression bin of the set, minus the set.

    Uses its own ``RandomState(seed)`` in the same order of draws as scanpy 1.11 (which seeds the global
    one), so the control set is the same; the global random state is not touched.
    """
    rs = np.random.RandomState(seed)
    cut = expression_bins(means, n_bins)
    genes = np.asarray(genes, dtype=np.int64)
    ctrl: set[int] = set()
    for c in np.unique(cut[genes]):
        r = np.flatnonzero(cut == c)
        if ctrl_size < len(r):
            r = r[rs.choice(len(r), size=ctrl_size, replace=False)]
        ctrl.update(set(r.tolist()) - set(genes.tolist()))
    return np.array(sorted(ctrl), dtype=np.int64)


def score_genes(
    X, sets: Sequence[Sequence[int]], *, ctrl_size: int = 50, n_bins: int = 25, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray]]:
    """scanpy ``score_genes`` for several sets at once: (cells x sets scores, control genes per set).

    Set ``k`` is scored as scanpy would with ``random_state=seed`` (scanpy re-seeds per call, so every set
    gets the same seed). Gene indices of a set must be unique.
    """
    means = gene_means(X)
    ctrl = [control_genes(means, s, ctrl_size=ctrl_size, n_bins=n_bins, seed=seed) for s in sets]
    for s, c in zip(sets, ctrl, strict=True):
        if len(c) == 0:
            raise ValueError(f"no control genes found for a set of {len(s)} genes; the data have too few genes")
    m = set_means(X, list(sets) + ctrl)
    k = len(sets)
    return m[:, :k] - m[:, k:], ctrl


try:  # one pass over the stored values, both cores; scipy's sparse product is the fallback
    import numba

    _csr_set_sums = numba.njit(parallel=True, cache=True)(_csr_set_sums)
    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba comes with scanpy
    _HAVE_NUMBA = False
