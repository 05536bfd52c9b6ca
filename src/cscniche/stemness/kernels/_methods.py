"""Scoring kernels: pure numpy/scipy functions on a cells x genes matrix (dense ndarray or CSR).

No AnnData here (the adapter is :mod:`cscniche.stemness._score`). Sparse input is never densified: scores are
numba passes over the CSR rows (set means, UCell) or sparse products computed in chunks of cells.

* :func:`score_genes` - Seurat/scanpy ``score_genes`` (mean of the set minus the mean of expression-binned
  control genes), reproducing scanpy's control-gene draw exactly for the same seed.
* :func:`ucell` - UCell (Andreatta & Carmona 2021): Mann-Whitney U of the set's within-cell ranks, ranks
  above ``max_rank`` capped at ``max_rank`` (as pyucell); one numba pass over the CSR rows, no matrix copy.
* :func:`aucell` - AUCell (Aibar et al. 2017): area under the recovery curve of the set within the top
  ``n_up`` genes of each cell, ordinal ranks (as decoupler).
* :func:`detected_genes`, :func:`gene_count_signature` - CytoTRACE-style potency (Gulati et al. 2020).
* :func:`spearman_with_weights` - the mRNAsi stemness index (Malta et al. 2018).
* :func:`residualise` - a score adjusted for the number of detected genes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
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


def _csr_set_sums(indptr, indices, data, gptr, gset, gw, n_sets):  # pragma: no cover - compiled by numba
    n = indptr.size - 1
    out = np.zeros((n, n_sets))
    for i in numba.prange(n):
        for j in range(indptr[i], indptr[i + 1]):
            g = indices[j]
            for k in range(gptr[g], gptr[g + 1]):
                out[i, gset[k]] += data[j] * gw[k]
    return out


try:  # one pass over the stored values, both cores; scipy's sparse product is the fallback
    import numba

    _csr_set_sums = numba.njit(parallel=True, cache=False)(_csr_set_sums)
    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba comes with scanpy
    _HAVE_NUMBA = False


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


def _aucell_row_sums(
    indptr, indices, data, key_of, gptr, gset, gw, sptr, sgene, sw, n_up, scan_max, use_codes
):  # pragma: no cover
    """Per row and set: ``sum(max(n_up - rank, 0))`` over the set's genes (ordinal descending ranks).

    A finite nonzero value's rank is ``1 + #(larger values) + #(equal values with a smaller tie key)`` among the
    row's finite nonzero values (zeros, explicit zeros, NaN and +-inf are not among them, so negative values
    rank below the positive ones and above the zeros). Counted by a scan of the row when it holds at most
    ``scan_max`` set genes, else by binary search in the row's sorted values (plus a scan of the ties when the
    rank can still be below ``n_up``). A zero set gene (reachable only when the row holds fewer than
    ``n_up - 1`` values) ranks ``m + 1 + key - #(values with a smaller key)``: after the ``m`` values, in key
    order among the zeros (at least ``key + 1``, so only keys below ``n_up - 1`` are counted). ``gptr``/``gset``/``gw``: genes x sets weights (CSR); ``sptr``/``sgene``/``sw``: the
    same by set (CSC). All terms are integers, so the sums are exact in any order. ``use_codes`` (float32 data,
    tie keys in ``0..2**31-1``): the scan compares one int64 per value, ``-(order-preserving int of the float's
    bits) * 2**32 + key``, which orders (value descending, key ascending) exactly as the two comparisons do.
    """
    n = indptr.size - 1
    n_sets = sptr.size - 1
    n_genes = gptr.size - 1
    out = np.zeros((n, n_sets))
    for blk in _prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
        r0, r1, width = _row_block(indptr, blk)
        bv = np.empty(width, dtype=data.dtype)
        bk = np.empty(width, dtype=np.int64)
        srt = np.empty(width, dtype=data.dtype)
        hv = np.empty(width, dtype=data.dtype)
        hk = np.empty(width, dtype=np.int64)
        hg = np.empty(width, dtype=np.int64)
        hp = np.empty(width, dtype=np.int64)
        code = np.empty(width, dtype=np.int64)
        present = np.zeros(n_genes, dtype=np.bool_)
        for i in range(r0, r1):
            m = 0
            nh = 0
            for j in range(indptr[i], indptr[i + 1]):
                v = data[j]
                if v != 0 and np.isfinite(v):
                    g = indices[j]
                    bv[m] = v
                    bk[m] = key_of[g]
                    m += 1
                    if gptr[g + 1] > gptr[g]:
                        hv[nh] = v
                        hk[nh] = key_of[g]
                        hg[nh] = g
                        hp[nh] = m - 1
                        nh += 1
            if nh > scan_max:
                srt[:m] = bv[:m]
                srt[:m].sort()
            elif use_codes and nh > 0:
                bits = bv[:m].view(np.int32)
                for t in range(m):
                    b = np.int64(bits[t])
                    if b < 0:
                        b = b ^ 0x7FFFFFFF  # negative floats: larger magnitude, smaller int
                    code[t] = -b * 4294967296 + bk[t]
            for h in range(nh):
                v = hv[h]
                kh = hk[h]
                if nh > scan_max:
                    hi = np.searchsorted(srt[:m], v, side="right")
                    gt = m - hi
                    if gt + 1 >= n_up:
                        continue
                    before = 0
                    if hi - np.searchsorted(srt[:m], v, side="left") > 1:
                        for t in range(m):
                            before += (bv[t] == v) & (bk[t] < kh)
                    rank = 1 + gt + before
                elif use_codes:
                    c = code[hp[h]]
                    before = 0
                    for t in range(m):
                        before += code[t] < c
                    rank = 1 + before
                else:
                    before = 0
                    for t in range(m):
                        before += (bv[t] > v) | ((bv[t] == v) & (bk[t] < kh))
                    rank = 1 + before
                if rank < n_up:
                    g = hg[h]
                    for k in range(gptr[g], gptr[g + 1]):
                        out[i, gset[k]] += (n_up - rank) * gw[k]
            if m >= n_up - 1:
                continue
            # zeros: rank m + 1 + key - #(values with a smaller key) >= key + 1, so only keys < n_up - 1 count
            for j in range(indptr[i], indptr[i + 1]):
                v = data[j]
                if v != 0 and np.isfinite(v):
                    present[indices[j]] = True
            for s in range(n_sets):
                for k in range(sptr[s], sptr[s + 1]):
                    g = sgene[k]
                    kg = key_of[g]
                    if kg >= n_up - 1 or present[g]:
                        continue
                    before = 0
                    for t in range(m):
                        before += bk[t] < kg
                    rank = m + 1 + kg - before
                    if rank < n_up:
                        out[i, s] += (n_up - rank) * sw[k]
            for j in range(indptr[i], indptr[i + 1]):
                present[indices[j]] = False
    return out


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


try:
    from numba import prange as _prange

    _row_block = numba.njit(cache=True)(_row_block)
    _ucell_row_gains = numba.njit(parallel=True, cache=True)(_ucell_row_gains)
    _aucell_row_sums = numba.njit(parallel=True, cache=True)(_aucell_row_sums)
    _csr_desc_ranks = numba.njit(parallel=True, cache=True)(_csr_desc_ranks)
    _csr_has_duplicates = numba.njit(parallel=True, cache=True)(_csr_has_duplicates)
except ImportError:  # pragma: no cover - numba is a pinned dependency; plain Python loops are correct but slow
    _prange = range


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
        _SCAN_MAX,
    )
    return _ucell_score(gain, sizes, max_rank)


def aucell_n_up(n_genes: int, n_up: int | float | None = None) -> int:
    """Top genes used by AUCell: 5 % of the genes (at least 2) by default, as decoupler."""
    if n_up is None:
        return int(np.clip(np.ceil(0.05 * n_genes), 2, n_genes))
    return int(np.ceil(n_up))


def aucell(
    X, sets: Sequence[Sequence[int]], *, n_up: int | float | None = None, tie_order: np.ndarray | None = None
) -> np.ndarray:
    """AUCell scores (cells x sets) as decoupler ``mt.aucell``: ordinal descending ranks over all genes.

    The AUC of the recovery curve up to ``n_up`` equals ``sum(n_up - rank)`` over the set's genes ranked below
    ``n_up``, divided by its maximum ``sum_{i=1}^{min(n, n_up - 1)} (n_up - i)``. Equal values (zeros above all,
    which matter for cells with fewer than ``n_up`` detected genes) are ranked in ``tie_order`` (a permutation:
    ``tie_order[g]`` is gene g's place; default the gene order). decoupler breaks ties by a seeded random order
    of the non-empty genes; the tests pass that order to reproduce it exactly. One numba pass over the CSR rows
    (:func:`_aucell_row_sums`, parallel over cells): no copy of the matrix unless it has duplicate entries
    (summed) or integer data. Ranked are the finite nonzero values; zeros, NaN and inf come after them.
    """
    X = _rank_csr(X)
    n_cells, n_genes = X.shape
    n_up = aucell_n_up(n_genes, n_up)
    key_of = np.arange(n_genes, dtype=np.int64) if tie_order is None else np.asarray(tie_order, dtype=np.int64)
    for s in sets:
        s = np.asarray(s, dtype=np.int64)
        if s.size and (s.min() < 0 or s.max() >= n_genes):
            raise ValueError(f"gene index out of range 0..{n_genes - 1} in an AUCell set")
    W = set_weights(n_genes, sets, normalise=False)
    W.sum_duplicates()
    Wr = W.tocsr()
    Wr.sum_duplicates()
    out = _aucell_row_sums(
        X.indptr,
        X.indices,
        X.data,
        key_of,
        Wr.indptr,
        Wr.indices,
        Wr.data.astype(np.float64),
        W.indptr,
        W.indices,
        W.data.astype(np.float64),
        n_up,
        _SCAN_MAX,
        X.dtype == np.float32 and (n_genes == 0 or (key_of.min() >= 0 and key_of.max() < 2**31)),
    )
    m = np.array([min(len(s), n_up - 1) for s in sets])
    max_auc = np.array([n_up * mm - mm * (mm + 1) / 2.0 for mm in m])
    return out / max_auc


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


def bh_fdr(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN kept)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.size, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = ok.size
    q = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out[order] = np.minimum(q, 1.0)
    return out


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
    for b0 in range(0, n_random, block):
        b1 = min(n_random, b0 + block)
        cols = [draws[j][b] for b in range(b0, b1) for j in range(k)]  # draw-major, set-minor
        m = means(cols).reshape(n, b1 - b0, k)
        if offsets is not None:
            m = m - np.asarray(offsets)[:, None, :]
        for b in range(b1 - b0):
            exceed += z2(m[:, b, :], 1 + b0 + b) >= obs - 1e-12
    p = (1.0 + exceed) / (1.0 + n_random)
    return (p, null) if return_null else p
