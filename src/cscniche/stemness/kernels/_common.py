"""Shared helpers of the kernels: CSR views, chunk cleaning, row blocks and ranks (numba where it pays)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

CHUNK = 20000  # cells per chunk: bounds the temporary arrays of the rank kernels


def _as_csr(X) -> sparse.csr_matrix:
    """CSR view of ``X`` (dense input becomes CSR of its nonzeros; CSR input is used as it is)."""
    if sparse.issparse(X):
        X = X.tocsr()
        if not X.has_sorted_indices:
            X = X.sorted_indices()
        return X
    return sparse.csr_matrix(np.asarray(X))


def set_weights(n_genes: int, sets: Sequence[Sequence[int]], *, normalise: bool = True) -> sparse.csc_matrix:
    """Sparse genes x sets matrix: ``1/len(set)`` (or 1) for the genes of each set."""
    rows = np.concatenate([np.asarray(s, dtype=np.int64) for s in sets]) if len(sets) else np.zeros(0, np.int64)
    cols = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    vals = np.concatenate([np.full(len(s), 1.0 / len(s) if normalise else 1.0) for s in sets]) if len(sets) else []
    return sparse.csc_matrix((vals, (rows, cols)), shape=(n_genes, len(sets)), dtype=np.float64)


def _clean_chunk(X: sparse.csr_matrix) -> sparse.csr_matrix:
    c = X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=True)
    c.data[~np.isfinite(c.data)] = 0.0
    c.eliminate_zeros()
    c.sort_indices()
    return c


_ROW_BLOCK = 256  # rows per parallel task of the UCell and AUCell kernels (one scratch buffer each)


def _row_block(indptr, blk):  # pragma: no cover - numba
    """Rows ``r0:r1`` of row block ``blk`` and the most stored entries in one of them (its scratch size)."""
    r0 = blk * _ROW_BLOCK
    r1 = min(indptr.size - 1, r0 + _ROW_BLOCK)
    width = 0
    for i in range(r0, r1):
        width = max(width, indptr[i + 1] - indptr[i])
    return r0, r1, width


_SCAN_MAX = 128  # UCell: a row holding at most this many set genes is scanned per gene, not sorted (faster)


def _csr_desc_ranks(indptr, data):  # pragma: no cover - numba
    """Within-row descending average-tie rank of every stored entry among the row's finite nonzero values
    (aligned with ``data``; ``inf`` for entries not ranked: zeros, NaN, +-inf)."""
    n = indptr.size - 1
    out = np.full(data.size, np.inf)
    for blk in _prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
        r0, r1, width = _row_block(indptr, blk)
        buf = np.empty(width, dtype=data.dtype)
        for i in range(r0, r1):
            m = 0
            for j in range(indptr[i], indptr[i + 1]):
                v = data[j]
                if v != 0 and np.isfinite(v):
                    buf[m] = v
                    m += 1
            srt = buf[:m]
            srt.sort()
            for j in range(indptr[i], indptr[i + 1]):
                v = data[j]
                if v == 0 or not np.isfinite(v):
                    continue
                lo = np.searchsorted(srt, v, side="left")
                hi = np.searchsorted(srt, v, side="right")
                out[j] = (m - hi) + (hi - lo + 1) / 2.0
    return out


def _csr_has_duplicates(indptr, indices, n_cols):  # pragma: no cover - numba
    """Whether a row of the CSR stores a column twice (sorted or unsorted indices; one pass, no sort)."""
    n = indptr.size - 1
    n_parts = 64
    found = np.zeros(n_parts, dtype=np.bool_)
    for part in _prange(n_parts):
        seen = np.full(n_cols, -1, dtype=np.int64)  # seen[g] = last row where column g was stored
        for i in range(part * n // n_parts, (part + 1) * n // n_parts):
            for j in range(indptr[i], indptr[i + 1]):
                g = indices[j]
                if seen[g] == i:
                    found[part] = True
                seen[g] = i
    return found.any()


def _rank_csr(X) -> sparse.csr_matrix:
    """CSR of ``X`` for the UCell kernels: duplicates summed, float data (a copy only when needed; the
    kernels do not need sorted indices, so unsorted input is used as it is)."""
    X = X.tocsr() if sparse.issparse(X) else sparse.csr_matrix(np.asarray(X))
    if not X.has_canonical_format and (X.has_sorted_indices or _csr_has_duplicates(X.indptr, X.indices, X.shape[1])):
        X = X.copy()
        X.sum_duplicates()
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    return X


try:
    import numba
    from numba import prange as _prange

    _row_block = numba.njit(cache=True)(_row_block)
    _csr_desc_ranks = numba.njit(parallel=True, cache=True)(_csr_desc_ranks)
    _csr_has_duplicates = numba.njit(parallel=True, cache=True)(_csr_has_duplicates)
except ImportError:  # pragma: no cover - numba is a pinned dependency; plain Python loops are correct but slow
    _prange = range
