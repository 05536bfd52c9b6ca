"""The ``ucell`` method (Andreatta & Carmona 2021): Mann-Whitney U of the set's within-cell ranks, ranks above
``max_rank`` capped (as pyucell); one numba pass over the CSR rows, no matrix copy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from . import _common
from ._common import _ROW_BLOCK, _csr_desc_ranks, _prange, _rank_csr, _row_block, set_weights


def _ucell_row_gains(indptr, indices, data, gptr, gset, gw, n_sets, max_rank, scan_max):  # pragma: no cover
    """Per row: sum over the set genes of ``max(max_rank - rank, 0)`` (average-tie descending ranks).

    A set gene's rank among the row's finite nonzero values is ``#greater + (#equal + 1) / 2``: counted by a
    linear scan of the row when it holds at most ``scan_max`` stored set genes, else by binary search in the
    row's values sorted once (both are exact integer counts). ``gptr``/``gset``/``gw`` are the genes x sets
    CSR weights. Zeros, explicit zeros, NaN and +-inf are not ranked (their rank is taken as ``max_rank``,
    gain 0); negative values are ranked below the positive ones.
    """
    n = indptr.size - 1
    out = np.zeros((n, n_sets))
    for blk in _prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
        r0, r1, width = _row_block(indptr, blk)
        buf = np.empty(width, dtype=data.dtype)
        hv = np.empty(width, dtype=data.dtype)
        hg = np.empty(width, dtype=np.int64)
        for i in range(r0, r1):
            m = 0
            nh = 0
            for j in range(indptr[i], indptr[i + 1]):
                v = data[j]
                if v != 0 and np.isfinite(v):
                    buf[m] = v
                    m += 1
                    g = indices[j]
                    if gptr[g + 1] > gptr[g]:
                        hv[nh] = v
                        hg[nh] = g
                        nh += 1
            if nh == 0:
                continue
            srt = buf[:m]
            if nh > scan_max:
                srt.sort()
            for h in range(nh):
                v = hv[h]
                if nh > scan_max:
                    hi = np.searchsorted(srt, v, side="right")
                    eq = hi - np.searchsorted(srt, v, side="left")
                    gt = m - hi
                else:
                    gt = 0
                    eq = 0
                    for t in range(m):
                        gt += srt[t] > v
                        eq += srt[t] == v
                gain = max_rank - (gt + (eq + 1) / 2.0)
                if gain > 0:
                    g = hg[h]
                    for k in range(gptr[g], gptr[g + 1]):
                        out[i, gset[k]] += gain * gw[k]
    return out


def _ucell_score(gain: np.ndarray, sizes: np.ndarray, max_rank: int) -> np.ndarray:
    """UCell from the summed gains ``sum(max(max_rank - rank, 0))`` per cell and set (see :func:`ucell`)."""
    rank_sum = sizes * max_rank - gain
    s_min = sizes * (sizes + 1) / 2.0
    s_max = sizes * max_rank
    with np.errstate(invalid="ignore", divide="ignore"):
        score = 1.0 - (rank_sum - s_min) / (s_max - s_min)
    score[:, s_max == s_min] = 0.0
    return np.clip(score, 0.0, None)


def ucell_transform(X, *, max_rank: int = 1500) -> sparse.csr_matrix:
    """Sparse cells x genes matrix ``max_rank - rank`` for genes ranked within the top ``max_rank`` of the cell.

    A gene's rank is its descending rank among the cell's finite nonzero values (average ties, as pyucell);
    zeros, NaN, inf and genes ranked beyond ``max_rank`` count as ``max_rank`` and are not stored. One numba
    pass over the CSR rows (parallel over cells, one sort per row).
    """
    X = _rank_csr(X)
    gain = _csr_desc_ranks(X.indptr, X.data)
    np.subtract(float(max_rank), gain, out=gain)
    np.maximum(gain, 0.0, out=gain)
    V = sparse.csr_matrix((gain, X.indices.copy(), X.indptr.copy()), shape=X.shape)
    V.eliminate_zeros()
    V.sort_indices()
    return V


def ucell_from_transform(V: sparse.csr_matrix, sets: Sequence[Sequence[int]], *, max_rank: int = 1500) -> np.ndarray:
    """UCell scores (cells x sets) from :func:`ucell_transform`: ``1 - (U_sum - n(n+1)/2) / (n max_rank - n(n+1)/2)``."""
    sizes = np.array([len(s) for s in sets], dtype=np.float64)
    gain = (V @ set_weights(V.shape[1], sets, normalise=False)).toarray()
    return _ucell_score(gain, sizes, max_rank)


def ucell(X, sets: Sequence[Sequence[int]], *, max_rank: int = 1500) -> np.ndarray:
    """UCell scores (cells x sets) as pyucell ``compute_ucell_scores`` (positive genes only, present genes).

    One numba pass over the CSR rows (:func:`_ucell_row_gains`, parallel over cells): no copy of the matrix
    (unless it has duplicate entries or integer data), memory of the output only. Ranks: descending, average
    ties, among the cell's finite nonzero values; a set gene that is zero (or NaN) counts as ``max_rank``.
    """
    X = _rank_csr(X)
    n_genes = X.shape[1]
    for s in sets:
        s = np.asarray(s, dtype=np.int64)
        if s.size and (s.min() < 0 or s.max() >= n_genes):
            raise ValueError(f"gene index out of range 0..{n_genes - 1} in a UCell set")
    sizes = np.array([len(s) for s in sets], dtype=np.float64)
    W = set_weights(n_genes, sets, normalise=False).tocsr()
    W.sum_duplicates()
    gain = _ucell_row_gains(
        X.indptr,
        X.indices,
        X.data,
        W.indptr,
        W.indices,
        W.data.astype(np.float64),
        len(sets),
        float(max_rank),
        _common._SCAN_MAX,
    )
    return _ucell_score(gain, sizes, max_rank)


try:
    import numba

    _ucell_row_gains = numba.njit(parallel=True, cache=True)(_ucell_row_gains)
except ImportError:  # pragma: no cover - numba is a pinned dependency
    pass
