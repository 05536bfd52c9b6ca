"""Immune composition around CSC vs non-CSC malignant cells, with a label-permutation null.

Two neighbourhoods:

- ``knn``: the cell's nearest neighbours in the shared expression embedding (the scanpy kNN graph;
  for several samples of one patient, an embedding batch-corrected with ComBat, see :func:`shared_knn`).
  This is a *transcriptional* neighbourhood (cells with similar profiles), not physical adjacency.
- ``spatial``: the cell's k nearest cells, or every cell within a radius, in ``obsm['spatial']``
  (physical neighbours; graph built by :func:`squidpy.gr.spatial_neighbors`).

The null permutes the CSC label among the malignant cells of the same sample (their number per sample
fixed), so the expected count answers: how many immune neighbours of each type would the same number of
malignant cells of that sample, chosen at random, have? Observed/expected ratios and permutation z are
per-sample normalised, so samples compare; squidpy's :func:`~squidpy.gr.nhood_enrichment` (which permutes
every label) is reported beside them, but its z-scores are not comparable across samples (squidpy #483).
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._scipy_stats import false_discovery_control
from .._tables import note_row

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
    "expected_fraction",
    "log2_enrichment",
    "z",
    "p",
    "fdr",
    "n_permutations",
    "note",
]
#: columns of the squidpy neighbourhood-enrichment table
SQUIDPY_COLUMNS = ["sample", "neighbourhood", "group", "neighbour_group", "count", "zscore", "n_permutations", "note"]
PSEUDOCOUNT = 0.5
MALIGNANT_GROUPS = ("CSC", "nonCSC")


def knn_adjacency(distances: sparse.spmatrix) -> sparse.csr_matrix:
    """Binary adjacency (row i: the neighbours of cell i) from scanpy's ``obsp['distances']``."""
    adj = sparse.csr_matrix(distances, copy=True)
    adj.data = np.ones_like(adj.data, dtype=np.float32)
    adj.setdiag(0)
    adj.eliminate_zeros()
    return adj


def spatial_adjacency(coords: np.ndarray, *, k: int = 10, radius: float | None = None) -> sparse.csr_matrix:
    """Binary adjacency of each cell to its ``k`` nearest other cells, or to every cell within ``radius``.

    Built with :func:`squidpy.gr.spatial_neighbors` (``coord_type='generic'``), self excluded.
    """
    import squidpy as sq

    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2 or not np.all(np.isfinite(coords)):
        raise ValueError("spatial coordinates must be a finite n x 2 (or n x 3) array")
    n = coords.shape[0]
    if n < 2:
        return sparse.csr_matrix((n, n), dtype=np.float32)
    tmp = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(n)]), obsm={"spatial": coords})
    if radius is not None:
        sq.gr.spatial_neighbors(tmp, coord_type="generic", radius=float(radius), set_diag=False)
    else:
        sq.gr.spatial_neighbors(tmp, coord_type="generic", n_neighs=int(min(k, n - 1)), set_diag=False)
    adj = sparse.csr_matrix(tmp.obsp["spatial_connectivities"], dtype=np.float32)
    adj.data[:] = 1.0
    adj.setdiag(0)
    adj.eliminate_zeros()
    return adj


def _empty(sample: str, neighbourhood: str, note: str) -> pd.DataFrame:
    return note_row(COLUMNS, note, blank=("group", "immune_type"), sample=sample, neighbourhood=neighbourhood)


def _permuted_counts(
    m: np.ndarray, is_csc: np.ndarray, strata: np.ndarray, n_permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """Neighbour counts (permutations x columns of ``m``) of random CSC sets, CSC count fixed per stratum."""
    out = np.zeros((n_permutations, m.shape[1]))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        k = int(is_csc[idx].sum())
        if k == 0 or k == idx.size:
            out += m[idx].sum(axis=0) if k else 0.0
            continue
        ms = m[idx]
        chunk = max(1, 2_000_000 // idx.size)  # bounded memory: chunk x cells random keys
        for start in range(0, n_permutations, chunk):
            stop = min(n_permutations, start + chunk)
            # a uniformly random k-subset per permutation: the k smallest of i.i.d. uniform keys
            pick = np.argpartition(rng.random((stop - start, idx.size)), k - 1, axis=1)[:, :k]
            out[start:stop] += ms[pick].sum(axis=1)
    return out


def neighbour_enrichment(
    adj: sparse.spmatrix,
    cell_type,
    compartment,
    csc,
    *,
    sample: str,
    neighbourhood: str,
    malignant=None,
    strata=None,
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
    malignant
        The malignant cells (``obs['malignant']``); ``compartment == 'malignant'`` when ``None``.
    strata
        Per-cell sample of origin when ``adj`` spans several samples: CSC labels are permuted within
        the malignant cells of each stratum. One stratum when ``None``.

    Returns
    -------
    One row per group (CSC, nonCSC) and immune type with observed and expected neighbour counts, the
    observed and expected fraction of the group's neighbours of that type, log2 enrichment
    ``log2((obs + 0.5) / (exp + 0.5))``, permutation z, two-sided permutation p and BH FDR over the rows
    of the table. When the sample has no malignant, CSC, non-CSC or immune cell, a single row with a
    ``note`` says so.
    """
    cell_type = np.asarray(cell_type, dtype=str)
    compartment = np.asarray(compartment, dtype=str)
    csc = np.asarray(csc, dtype=bool)
    mal = compartment == "malignant" if malignant is None else np.asarray(malignant, dtype=bool)
    imm = (compartment == "immune") & ~mal
    strata = np.zeros(len(cell_type), dtype=int) if strata is None else np.asarray(strata)
    if mal.sum() == 0:
        return _empty(sample, neighbourhood, "no malignant cells")
    if imm.sum() == 0:
        return _empty(sample, neighbourhood, "no immune cells")
    k = int(csc[mal].sum())
    if k == 0 or k == mal.sum():
        return _empty(sample, neighbourhood, "no CSC" if k == 0 else "no non-CSC malignant cells")
    types = np.unique(cell_type[imm])
    code = {t: i for i, t in enumerate(types)}
    rows_imm = np.flatnonzero(imm)
    onehot = sparse.csr_matrix(
        (np.ones(rows_imm.size, dtype=np.float64), (rows_imm, [code[t] for t in cell_type[imm]])),
        shape=(len(cell_type), len(types)),
    )
    adj = sparse.csr_matrix(adj)
    m = np.asarray((adj[mal] @ onehot).todense())  # malignant cells x immune types
    n_nb = np.asarray(adj[mal].sum(axis=1)).ravel()
    is_csc = csc[mal]
    # the last column carries the total number of neighbours, for the expected fraction
    m_all = np.column_stack([m, n_nb])
    rng = np.random.default_rng(seed)
    perm_all = _permuted_counts(m_all, is_csc, strata[mal], n_permutations, rng)
    total_all = m_all.sum(axis=0)
    obs_csc_all = m_all[is_csc].sum(axis=0)
    out = []
    for group, obs_all, null_all, n_cells in (
        ("CSC", obs_csc_all, perm_all, k),
        ("nonCSC", total_all - obs_csc_all, total_all - perm_all, int(mal.sum()) - k),
    ):
        obs, null, nb = obs_all[:-1], null_all[:, :-1], obs_all[-1]
        exp = null.mean(axis=0)
        exp_nb = null_all[:, -1].mean()
        sd = null.std(axis=0)
        hi = (1 + (null >= obs - 1e-9).sum(axis=0)) / (n_permutations + 1)
        lo = (1 + (null <= obs + 1e-9).sum(axis=0)) / (n_permutations + 1)
        p = np.minimum(1.0, 2 * np.minimum(hi, lo))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, (obs - exp) / np.where(sd > 0, sd, 1.0), 0.0)
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
                    "expected_fraction": float(exp[j] / exp_nb) if exp_nb > 0 else np.nan,
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


def squidpy_enrichment(
    adj: sparse.spmatrix,
    group,
    compartment,
    *,
    sample: str,
    neighbourhood: str = "spatial",
    n_permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`squidpy.gr.nhood_enrichment` of every group pair on ``adj``, CSC/nonCSC rows vs immune columns.

    squidpy permutes all cluster labels over all cells (a different null from
    :func:`neighbour_enrichment`); its z-scores are per-sample and not comparable across samples.
    """
    import squidpy as sq

    group = np.asarray(group, dtype=str)
    compartment = np.asarray(compartment, dtype=str)
    rows = [g for g in MALIGNANT_GROUPS if (group == g).any()]
    cols = sorted(set(group[(compartment == "immune") & ~np.isin(group, MALIGNANT_GROUPS)]))
    note = "no immune cells" if not cols else ("no CSC" if "CSC" not in rows else "")
    if note:
        blank = ("group", "neighbour_group")
        return note_row(SQUIDPY_COLUMNS, note, blank=blank, sample=sample, neighbourhood=neighbourhood)
    a = ad.AnnData(obs=pd.DataFrame({"group": pd.Categorical(group)}, index=[str(i) for i in range(len(group))]))
    a.obsp["nb_connectivities"] = sparse.csr_matrix(adj, dtype=np.float64)
    res = sq.gr.nhood_enrichment(
        a,
        cluster_key="group",
        connectivity_key="nb",
        n_perms=n_permutations,
        seed=seed,
        copy=True,
        show_progress_bar=False,
    )
    zscore, count = (res.zscore, res.counts) if hasattr(res, "zscore") else res
    cats = list(a.obs["group"].cat.categories)
    out = []
    for g in rows:
        for c in cols:
            i, j = cats.index(g), cats.index(c)
            out.append(
                {
                    "sample": sample,
                    "neighbourhood": neighbourhood,
                    "group": g,
                    "neighbour_group": c,
                    "count": int(count[i, j]),
                    "zscore": float(zscore[i, j]),
                    "n_permutations": n_permutations,
                    "note": "",
                }
            )
    return pd.DataFrame(out, columns=SQUIDPY_COLUMNS)


def spatial_coordinates(adata: ad.AnnData, *, x: str | None = None, y: str | None = None) -> np.ndarray | None:
    """Cell coordinates: the ``obs`` columns ``x`` and ``y`` when named, else ``obsm['spatial']``, else ``None``."""
    if x or y:
        missing = [c for c in (x, y) if not c or c not in adata.obs.columns]
        if missing:
            raise ValueError(f"spatial coordinate columns {missing} are not obs columns")
        return adata.obs[[x, y]].to_numpy(dtype=np.float64)
    if "spatial" in adata.obsm:
        return np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    return None


def csc_niche_members(adj: sparse.spmatrix, csc) -> np.ndarray:
    """Cells with at least one CSC among their neighbours (row i of ``adj``: neighbours of cell i), or neighbouring a CSC."""
    adj = sparse.csr_matrix(adj)
    csc = np.asarray(csc, dtype=np.float64)
    return ((adj @ csc) > 0) | ((adj.T @ csc) > 0)


def shared_knn(
    adatas: list[ad.AnnData],
    *,
    batch_key: str = "sample",
    n_top_genes: int = 2000,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    seed: int = 0,
) -> ad.AnnData:
    """One kNN graph over several samples of one patient, on a ComBat-corrected embedding.

    The samples (log-normalised ``X``, ``obs`` with the cscniche labels) are concatenated on their
    common genes; highly variable genes (per batch), :func:`scanpy.pp.combat` over ``batch_key``, PCA
    and :func:`scanpy.pp.neighbors` give ``obsp['distances']`` of the returned AnnData. With one sample
    no correction is done.
    """
    import scanpy as sc

    from ..preprocess._embed import mark_variable_genes, pca_size

    joint = ad.concat(adatas, join="inner", label=batch_key, keys=[str(a.obs[batch_key].iloc[0]) for a in adatas])
    joint.obs_names_make_unique()
    n_batches = joint.obs[batch_key].nunique()
    if mark_variable_genes(joint, n_top_genes, batch_key=batch_key if n_batches > 1 else None) < joint.n_vars:
        joint = joint[:, joint.var["highly_variable"].to_numpy()].copy()
    joint.X = joint.X.toarray() if sparse.issparse(joint.X) else np.asarray(joint.X, dtype=np.float64)
    if n_batches > 1:
        sc.pp.combat(joint, key=batch_key)
    n_comps = pca_size(n_pcs, n_obs=joint.n_obs, n_genes=joint.n_vars, minimum=1)
    sc.pp.pca(joint, n_comps=n_comps, random_state=seed)
    from .._numba import import_umap

    import_umap()  # scanpy's kNN connectivities use umap-learn: compiled once, then cached on disk
    sc.pp.neighbors(joint, n_neighbors=n_neighbors, use_rep="X_pca", random_state=seed)
    return joint
