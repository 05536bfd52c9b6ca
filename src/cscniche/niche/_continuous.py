"""Threshold-free answers (``definition = continuous``): stemness across malignant cells vs the niche.

* Neighbours: Spearman rho of ``stemness`` with each immune type's share of a malignant cell's neighbours.
  Its p comes from a null that keeps spatial structure for a ``spatial`` neighbourhood: the stemness *field*
  is moved rigidly against the tissue (toroidal shift, :meth:`cscniche.niche.spatial_null.ShiftField.sources`:
  each malignant cell takes the stemness of the malignant cell nearest its back-shifted position; cells that
  land off tumour carry no value and leave that draw; draws that keep fewer than ``min_covered`` of the
  malignant cells are redrawn). For ``knn`` (transcriptional neighbours) stemness is permuted among the
  malignant cells. The statistic of every draw is the Pearson correlation of the full-sample ranks over the
  cells carrying a value, i.e. Spearman's rho for the observed data. Two-sided p with the +1 correction.
* Checkpoints: Spearman rho of ``stemness`` with each gene's log-normalised expression across malignant cells,
  p from :func:`scipy.stats.spearmanr` (cells as independent replicates: a within-sample statement).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._scipy_stats import rankdata, spearmanr
from .spatial_null import ShiftField

#: draws that keep fewer than this share of malignant cells on tumour are redrawn (spatial shift of stemness)
MIN_COVERED = 0.5
_CHUNK_VALUES = 2_000_000


def _rho_draws(rs: np.ndarray, ry: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Pearson correlation (draws x columns of ``ry``) of ``rs[src]`` with ``ry`` over cells with ``src >= 0``."""
    w = (src >= 0).astype(np.float64)
    s = np.where(src >= 0, rs[np.maximum(src, 0)], 0.0)
    n = w.sum(axis=1, keepdims=True)
    ss, ss2 = s.sum(axis=1, keepdims=True), (s * s).sum(axis=1, keepdims=True)
    sy, sy2, sxy = w @ ry, w @ (ry * ry), s @ ry
    cov = sxy - ss * sy / n
    var_s = ss2 - ss * ss / n
    var_y = sy2 - sy * sy / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return cov / np.sqrt(var_s * var_y)


def _two_sided(obs: np.ndarray, null: np.ndarray) -> np.ndarray:
    b = null.shape[0]
    tol = 1e-12
    hi = (1 + (null >= obs - tol).sum(axis=0)) / (b + 1)
    lo = (1 + (null <= obs + tol).sum(axis=0)) / (b + 1)
    return np.minimum(1.0, 2 * np.minimum(hi, lo))


def neighbour_share_association(
    adj: sparse.spmatrix,
    stemness,
    cell_type,
    compartment,
    malignant,
    *,
    coords=None,
    null: str = "spatial_shift",
    n_permutations: int = 999,
    seed: int = 0,
    min_covered: float = MIN_COVERED,
) -> dict:
    """Spearman rho of stemness with each immune type's neighbour share, across malignant cells, and its p.

    Returns a dict: ``types``, ``rho``, ``p``, ``n_cells`` (malignant cells with a neighbour and a stemness
    value), ``n_permutations`` (valid draws) and ``note`` ('' or why there is no statistic).
    """
    stemness = np.asarray(stemness, dtype=np.float64)
    cell_type = np.asarray(cell_type).astype(str)
    compartment = np.asarray(compartment).astype(str)
    mal = np.asarray(malignant, dtype=bool)
    imm = (compartment == "immune") & ~mal
    empty = {"types": np.array([], dtype=str), "rho": np.array([]), "p": np.array([]), "n_cells": 0,
             "n_permutations": 0}  # fmt: skip
    if not mal.any():
        return {**empty, "note": "no malignant cells"}
    if not imm.any():
        return {**empty, "note": "no immune cells"}
    adj = sparse.csr_matrix(adj)
    types, codes = np.unique(cell_type[imm], return_inverse=True)
    rows_imm = np.flatnonzero(imm)
    onehot = sparse.csr_matrix((np.ones(rows_imm.size), (rows_imm, codes)), shape=(adj.shape[0], len(types)))
    nb = np.asarray(adj.sum(axis=1)).ravel()
    use = mal & (nb > 0) & np.isfinite(stemness)
    if use.sum() < 10:
        return {**empty, "note": "fewer than 10 malignant cells with neighbours and a stemness value"}
    share = np.asarray((adj[use] @ onehot).todense()) / nb[use][:, None]
    rs = rankdata(stemness[use])
    rs = rs - rs.mean()
    ry = np.column_stack([rankdata(share[:, j]) for j in range(len(types))])
    ry = ry - ry.mean(axis=0)
    n = int(use.sum())
    obs = _rho_draws(rs, ry, np.arange(n)[None, :])[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_VALUES // n)
    draws = []
    done = tries = 0
    field = (
        ShiftField(np.asarray(coords, dtype=np.float64)[use], np.zeros(n, dtype=bool))
        if null == "spatial_shift"
        else None
    )
    while done < n_permutations and tries < 400:
        tries += 1
        b = min(chunk, n_permutations - done)
        if field is None:
            src = np.argsort(rng.random((b, n)), axis=1)
        else:
            shifts = rng.random((b, 2)) * field.period
            src = field.sources(shifts, np.zeros(b), np.zeros(b, dtype=bool))
            src = src[(src >= 0).mean(axis=1) >= min_covered]
        if len(src):
            r = _rho_draws(rs, ry, src)
            draws.append(r[np.all(np.isfinite(r) | (np.std(ry, axis=0) == 0), axis=1)])
            done += len(draws[-1])
    null_rho = np.vstack(draws) if draws else np.zeros((0, len(types)))
    if null_rho.shape[0] == 0:
        return {**empty, "note": "no valid null draw"}
    p = _two_sided(np.nan_to_num(obs), np.nan_to_num(null_rho))
    p = np.where(np.isfinite(obs), p, np.nan)
    return {"types": types, "rho": obs, "p": p, "n_cells": n, "n_permutations": int(null_rho.shape[0]), "note": ""}


def gene_association(stemness, x) -> tuple[float, float]:
    """Spearman rho and p of ``stemness`` with one gene's expression ``x`` (NaN when either is constant)."""
    s, x = np.asarray(stemness, dtype=np.float64), np.asarray(x, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(x)
    if ok.sum() < 3 or np.ptp(s[ok]) == 0 or np.ptp(x[ok]) == 0:
        return np.nan, np.nan
    res = spearmanr(s[ok], x[ok])
    return float(res.statistic), float(res.pvalue)
