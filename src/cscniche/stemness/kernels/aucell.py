"""The ``aucell`` method (Aibar et al. 2017): area under the recovery curve of the set within the top ``n_up``
genes of each cell, ordinal ranks (as decoupler)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _common
from ._common import _ROW_BLOCK, _prange, _rank_csr, _row_block, set_weights


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
        _common._SCAN_MAX,
        X.dtype == np.float32 and (n_genes == 0 or (key_of.min() >= 0 and key_of.max() < 2**31)),
    )
    m = np.array([min(len(s), n_up - 1) for s in sets])
    max_auc = np.array([n_up * mm - mm * (mm + 1) / 2.0 for mm in m])
    return out / max_auc


try:
    import numba

    _aucell_row_sums = numba.njit(parallel=True, cache=True)(_aucell_row_sums)
except ImportError:  # pragma: no cover - numba is a pinned dependency
    pass
