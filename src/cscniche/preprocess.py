"""Quality control, normalisation, embedding, kNN graph and clusters (scanpy)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from ._errors import InputError
from .io import diagnose_counts

log = logging.getLogger(__name__)


def qc_filter(
    adata: ad.AnnData,
    *,
    sample: str,
    min_genes: int = 200,
    min_counts: int = 500,
    max_pct_mt: float = 20.0,
    min_cells: int = 0,
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Filter cells and genes on QC metrics; return the filtered AnnData and a one-row QC table.

    Cells are kept with ``n_genes >= min_genes``, ``total_counts >= min_counts`` and
    ``pct_counts_mt <= max_pct_mt`` (mitochondrial genes: names starting with ``MT-``);
    counts are taken from ``layers['counts']``, or from ``X`` when it holds raw counts;
    genes are kept when detected in ``>= min_cells`` cells. ``obs`` gains ``n_genes``,
    ``total_counts`` and ``pct_counts_mt``.
    """
    adata = adata.copy()
    if "counts" not in adata.layers:
        why = diagnose_counts(adata.X)
        if why is not None:
            raise InputError(f"X holds no raw counts ({why}) and there is no counts layer", sample=sample)
        adata.layers["counts"] = adata.X.copy()
    adata.var["mt"] = adata.var_names.str.upper().str.startswith("MT-")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    adata.obs["n_genes"] = adata.obs["n_genes_by_counts"].astype(int)
    low_genes = adata.obs["n_genes"] < min_genes
    low_counts = adata.obs["total_counts"] < min_counts
    high_mt = adata.obs["pct_counts_mt"] > max_pct_mt
    keep = ~(low_genes | low_counts | high_mt)
    table = pd.DataFrame(
        {
            "sample": [sample],
            "n_cells_in": [adata.n_obs],
            "n_genes_in": [adata.n_vars],
            "removed_low_genes": [int(low_genes.sum())],
            "removed_low_counts": [int(low_counts.sum())],
            "removed_high_mt": [int(high_mt.sum())],
            "n_cells_out": [int(keep.sum())],
            "median_genes_per_cell": [float(np.median(adata.obs["n_genes"]))],
            "median_counts_per_cell": [float(np.median(adata.obs["total_counts"]))],
            "median_pct_mt": [float(np.median(adata.obs["pct_counts_mt"]))],
            "min_genes": [min_genes],
            "min_counts": [min_counts],
            "max_pct_mt": [max_pct_mt],
        }
    )
    if keep.sum() == 0:
        raise InputError(
            f"QC removed every cell (min_genes={min_genes}: {int(low_genes.sum())} low, min_counts={min_counts}: "
            f"{int(low_counts.sum())} low, max_pct_mt={max_pct_mt}: {int(high_mt.sum())} high; median genes per cell "
            f"{np.median(adata.obs['n_genes']):.0f}); lower the qc thresholds in the config",
            sample=sample,
        )
    adata = adata[keep.to_numpy()].copy()
    gene_cells = np.asarray((adata.layers["counts"] > 0).sum(axis=0)).ravel()
    adata = adata[:, gene_cells >= min_cells].copy()
    table["n_genes_out"] = adata.n_vars
    adata.obs = adata.obs.drop(columns=["n_genes_by_counts"], errors="ignore")
    return adata, table


def normalise(adata: ad.AnnData, *, target_sum: float = 1e4) -> None:
    """Library-size normalise and log1p ``X`` in place (counts stay in ``layers['counts']``)."""
    adata.X = adata.layers["counts"].copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)


def mark_variable_genes(adata: ad.AnnData, n_top_genes: int, *, batch_key: str | None = None) -> int:
    """``var['highly_variable']``: the ``n_top_genes`` most variable genes, or every gene when there are no more.

    :func:`scanpy.pp.highly_variable_genes` (seurat flavour; per batch with ``batch_key``). Returns how many.
    """
    n_top = min(n_top_genes, adata.n_vars)
    if n_top < adata.n_vars:
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat", batch_key=batch_key)
    else:
        adata.var["highly_variable"] = True
    return int(adata.var["highly_variable"].sum())


def pca_size(n_pcs: int, *, n_obs: int, n_genes: int, minimum: int = 2) -> int:
    """Principal components that fit the data: ``n_pcs``, fewer than the cells and the genes, at least ``minimum``."""
    return int(max(minimum, min(n_pcs, n_obs - 1, n_genes - 1)))


def embed_and_cluster(
    adata: ad.AnnData,
    *,
    n_top_genes: int = 2000,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    seed: int = 0,
    umap: bool = True,
) -> None:
    """HVG selection, PCA, kNN graph, Leiden clusters and (optionally) UMAP, in place.

    Writes ``obsm['X_pca']``, ``obsp['connectivities']``/``['distances']``, ``obs['leiden']``
    and ``obsm['X_umap']``. Fewer genes or cells than asked for shrink ``n_top_genes`` and ``n_pcs``.
    """
    n_hvg = mark_variable_genes(adata, n_top_genes)
    n_comps = pca_size(n_pcs, n_obs=adata.n_obs, n_genes=n_hvg)
    sc.pp.pca(adata, n_comps=n_comps, mask_var="highly_variable", random_state=seed)
    sc.pp.neighbors(adata, n_neighbors=min(n_neighbors, adata.n_obs - 1), n_pcs=n_comps, random_state=seed)
    sc.tl.leiden(adata, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    if umap:
        sc.tl.umap(adata, random_state=seed)
