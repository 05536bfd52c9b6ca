"""Immune composition around CSC vs non-CSC malignant cells, with a label-permutation null.

Two neighbourhoods:

- ``knn``: the cell's nearest neighbours in the shared expression embedding (the scanpy kNN graph).
  This is a *transcriptional* neighbourhood (cells with similar profiles), not physical adjacency.
- ``spatial``: the cell's k nearest cells in ``obsm['spatial']`` (physical neighbours).

The null permutes the CSC label among the malignant cells of the sample (their number fixed),
so the expected count answers: how many immune neighbours of each type would the same number of
malignant cells, chosen at random, have?
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import false_discovery_control

log = logging.getLogger(__name__)

COLUMNS = [
    "sample",
    "neighbourhood",
    "group",
    "immune_type",
    "n_cells",
    "observed",
    "expected",
    "observed_fraction",
    "log2_enrichment",
    "z",
    "p",
    "fdr",
    "n_permutations",
    "note",
]
PSEUDOCOUNT = 0.5


def knn_adjacency(distances: sparse.spmatrix) -> sparse.csr_matrix:
    """Binary adjacency (row i: the neighbours of cell i) from scanpy's ``obsp['distances']``."""
    adj = sparse.csr_matrix(distances, copy=True)
    adj.data = np.ones_like(adj.data, dtype=np.float32)
    adj.setdiag(0)
    adj.eliminate_zeros()
    return adj


def spatial_adjacency(coords: np.ndarray, *, k: int = 10) -> sparse.csr_matrix:
    """Binary adjacency of each cell to its ``k`` nearest other cells in physical space."""
    from sklearn.neighbors import NearestNeighbors

    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2 or not np.all(np.isfinite(coords)):
        raise ValueError("spatial coordinates must be a finite n x 2 (or n x 3) array")
    n = coords.shape[0]
    k = min(k, n - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(coords)
    _, idx = nn.kneighbors(coords)
    rows = np.repeat(np.arange(n), k)
    cols = idx[:, 1:].ravel()
    return sparse.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, n))


def _empty(sample: str, neighbourhood: str, note: str) -> pd.DataFrame:
    row = dict.fromkeys(COLUMNS, np.nan)
    row.update(sample=sample, neighbourhood=neighbourhood, note=note, group="", immune_type="")
    return pd.DataFrame([row], columns=COLUMNS)


def neighbour_enrichment(
    adj: sparse.spmatrix,
    cell_type,
    compartment,
    csc,
    *,
    sample: str,
    neighbourhood: str,
    n_permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Immune-type composition of the neighbours of CSC and non-CSC malignant cells.

    Parameters
    ----------
    adj
        n x n adjacency; row i holds the neighbours of cell i.
    cell_type, compartment, csc
        Per-cell labels, compartment (``immune`` cells are counted) and CSC flag.

    Returns
    -------
    One row per group (CSC, nonCSC) and immune type with observed and expected neighbour counts,
    log2 enrichment ``log2((obs + 0.5) / (exp + 0.5))``, permutation z, two-sided permutation p
    and BH FDR over the rows of the table. When the sample has no malignant, CSC, non-CSC or
    immune cell, a single row with a ``note`` says so.
    """
    cell_type = np.asarray(cell_type, dtype=str)
    compartment = np.asarray(compartment, dtype=str)
    csc = np.asarray(csc, dtype=bool)
    mal = compartment == "malignant"
    imm = compartment == "immune"
    if mal.sum() == 0:
        return _empty(sample, neighbourhood, "no malignant cells")
    if imm.sum() == 0:
        return _empty(sample, neighbourhood, "no immune cells")
    k = int(csc[mal].sum())
    if k == 0 or k == mal.sum():
        return _empty(sample, neighbourhood, "no CSC" if k == 0 else "no non-CSC malignant cells")
    types = np.unique(cell_type[imm])
    code = {t: i for i, t in enumerate(types)}
    cols = np.array([code.get(t, -1) for t in cell_type])
    rows_imm = np.flatnonzero(imm)
    onehot = sparse.csr_matrix(
        (np.ones(rows_imm.size, dtype=np.float64), (rows_imm, cols[imm])), shape=(len(cell_type), len(types))
    )
    adj = sparse.csr_matrix(adj)
    m = np.asarray((adj[mal] @ onehot).todense())  # malignant cells x immune types
    n_nb = np.asarray(adj[mal].sum(axis=1)).ravel()
    is_csc = csc[mal]
    obs_csc = m[is_csc].sum(axis=0)
    total = m.sum(axis=0)
    obs_non = total - obs_csc
    rng = np.random.default_rng(seed)
    perm = np.empty((n_permutations, len(types)))
    n_mal = m.shape[0]
    for b in range(n_permutations):
        idx = rng.choice(n_mal, size=k, replace=False)
        perm[b] = m[idx].sum(axis=0)
    out = []
    for group, obs, null, n_cells, nb in (
        ("CSC", obs_csc, perm, k, n_nb[is_csc].sum()),
        ("nonCSC", obs_non, total - perm, n_mal - k, n_nb[~is_csc].sum()),
    ):
        exp = null.mean(axis=0)
        sd = null.std(axis=0)
        hi = (1 + (null >= obs - 1e-9).sum(axis=0)) / (n_permutations + 1)
        lo = (1 + (null <= obs + 1e-9).sum(axis=0)) / (n_permutations + 1)
        p = np.minimum(1.0, 2 * np.minimum(hi, lo))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, (obs - exp) / sd, 0.0)
        for j, t in enumerate(types):
            out.append(
                {
                    "sample": sample,
                    "neighbourhood": neighbourhood,
                    "group": group,
                    "immune_type": t,
                    "n_cells": int(n_cells),
                    "observed": float(obs[j]),
                    "expected": float(exp[j]),
                    "observed_fraction": float(obs[j] / nb) if nb > 0 else np.nan,
                    "log2_enrichment": float(np.log2((obs[j] + PSEUDOCOUNT) / (exp[j] + PSEUDOCOUNT))),
                    "z": float(z[j]),
                    "p": float(p[j]),
                    "n_permutations": n_permutations,
                    "note": "",
                }
            )
    df = pd.DataFrame(out)
    df["fdr"] = false_discovery_control(df["p"].to_numpy(), method="bh")
    return df[COLUMNS]
