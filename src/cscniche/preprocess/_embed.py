"""Normalisation, the analysed sketch, HVGs, PCA, kNN graph, Leiden clusters and UMAP (scanpy)."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np

from .._numba import import_umap
from .._params import EmbeddingParams
from ..load import _ondisk as ondisk

log = logging.getLogger(__name__)


def sketch(n_obs: int, max_cells: int | None, *, seed: int = 0) -> np.ndarray | None:
    """Positions of a seeded uniform random sample of ``max_cells`` of ``n_obs`` cells (increasing), or ``None``.

    ``None`` when there is no limit or the sample is not larger. A uniform sample keeps the cell-type
    proportions, which the neighbourhood statistics compare against (expected counts under permutation).
    """
    if not max_cells or n_obs <= max_cells:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_obs, int(max_cells), replace=False))


def region_sketch(coords: np.ndarray, max_cells: int | None) -> np.ndarray | None:
    """Positions (increasing) of the ``max_cells`` cells nearest the slide's centre, or ``None`` when there is no
    limit or no more cells than that: one contiguous region, so every analysed cell keeps the physical
    neighbours it has in the tissue, except at the region's rim. The centre is the coordinate-wise median of the
    cells (deterministic; ties in distance broken by position)."""
    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    n_obs = xy.shape[0]
    if not max_cells or n_obs <= max_cells:
        return None
    d2 = ((xy - np.median(xy, axis=0)) ** 2).sum(axis=1)
    return np.sort(np.lexsort((np.arange(n_obs), d2))[: int(max_cells)])


def _coordinates(path: str | Path) -> np.ndarray | None:
    """``obsm['spatial']`` of an ``.h5ad`` file (finite n x >= 2 numbers), else ``None``."""
    m = ondisk.read_elem(path, "obsm/spatial", default=None)
    if m is None:
        return None
    m = np.asarray(m.to_numpy() if hasattr(m, "to_numpy") else m)
    if m.ndim != 2 or m.shape[1] < 2 or not np.issubdtype(m.dtype, np.number):
        return None
    return m[:, :2].astype(np.float64) if np.isfinite(m[:, :2].astype(np.float64)).all() else None


def read_for_analysis(
    path: str | Path,
    *,
    sample: str,
    max_cells: int | None = None,
    target_sum: float = 1e4,
    seed: int = 0,
    spatial_sketch: str = "region",
) -> ad.AnnData:
    """The QC-passed counts of ``path`` in memory, normalised (:func:`normalise`), or a sketch of them.

    With more than ``max_cells`` cells only a sketch of ``max_cells`` cells is read
    (:func:`cscniche.load._ondisk.read_h5ad`): for a file with ``obsm['spatial']`` and ``spatial_sketch =
    'region'`` the cells nearest the slide's centre (:func:`region_sketch`), else a seeded uniform sample
    (:func:`sketch`). ``uns['cscniche']['sketch']`` records the sizes and the kind (``region``/``uniform``).
    """
    if spatial_sketch not in ("region", "uniform"):
        raise ValueError(f"scale.spatial_sketch must be 'region' or 'uniform', not {spatial_sketch!r}")
    n_obs = ondisk.shape(path)[0]
    kind = "uniform"
    coords = _coordinates(path) if spatial_sketch == "region" and max_cells and n_obs > max_cells else None
    if coords is not None and coords.shape[0] == n_obs:
        rows, kind = region_sketch(coords, max_cells), "region"
    else:
        rows = sketch(n_obs, max_cells, seed=seed)
    adata = ondisk.read_h5ad(path, rows)
    adata.layers["counts"] = adata.X
    normalise(adata, target_sum=target_sum)
    info = adata.uns.setdefault("cscniche", {})
    info["sketch"] = {"n_cells_qc": int(n_obs), "n_cells_analysed": int(adata.n_obs), "seed": int(seed),
                      "max_cells": int(max_cells or 0), "kind": kind if rows is not None else "none"}  # fmt: skip
    if rows is not None:
        what = (
            "the cells nearest the slide's centre (a region sketch)" if kind == "region" else "a seeded uniform sketch"
        )
        log.warning(
            "sample %s: %d cells passed QC; the analysis runs on %s of %d (scale.max_cells)",
            sample, n_obs, what, adata.n_obs,
        )  # fmt: skip
    return adata


def normalise(adata: ad.AnnData, *, target_sum: float = 1e4) -> None:
    """Library-size normalise and log1p ``X`` in place (counts stay in ``layers['counts']``)."""
    import scanpy as sc

    adata.X = adata.layers["counts"].copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)


def mark_variable_genes(adata: ad.AnnData, n_top_genes: int, *, batch_key: str | None = None) -> int:
    """``var['highly_variable']``: the ``n_top_genes`` most variable genes, or every gene when there are no more.

    :func:`scanpy.pp.highly_variable_genes` (seurat flavour; per batch with ``batch_key``). Returns how many.
    """
    import scanpy as sc

    n_top = min(n_top_genes, adata.n_vars)
    if n_top < adata.n_vars:
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat", batch_key=batch_key)
    else:
        adata.var["highly_variable"] = True
    return int(adata.var["highly_variable"].sum())


def pca_size(n_pcs: int, *, n_obs: int, n_genes: int, minimum: int = 2) -> int:
    """Principal components that fit the data: ``n_pcs``, fewer than the cells and the genes, at least ``minimum``."""
    return int(max(minimum, min(n_pcs, n_obs - 1, n_genes - 1)))


def embed_and_cluster(adata: ad.AnnData, *, params: EmbeddingParams = EmbeddingParams(), seed: int = 0) -> None:
    """HVG selection, PCA, kNN graph, Leiden clusters and (optionally) UMAP, in place.

    ``params``: the ``embedding`` config section. Writes ``obsm['X_pca']``, ``obsp['connectivities']``/
    ``['distances']``, ``obs['leiden']`` and ``obsm['X_umap']``. Fewer genes or cells than asked for shrink
    ``n_top_genes`` and ``n_pcs``.
    """
    import scanpy as sc

    n_hvg = mark_variable_genes(adata, params.n_top_genes)
    n_comps = pca_size(params.n_pcs, n_obs=adata.n_obs, n_genes=n_hvg)
    from threadpoolctl import threadpool_limits

    # one BLAS thread: with 2, the PCs differ by ~3e-6 (float32 sums in another order), enough to give UMAP's
    # optimisation another layout; so the same seed gives the same embedding on any number of cores
    with threadpool_limits(limits=1, user_api="blas"):
        sc.pp.pca(adata, n_comps=n_comps, mask_var="highly_variable", random_state=seed)
    import_umap()  # scanpy's kNN connectivities and UMAP use umap-learn: compiled once, then cached on disk
    sc.pp.neighbors(adata, n_neighbors=min(params.n_neighbors, adata.n_obs - 1), n_pcs=n_comps, random_state=seed)
    sc.tl.leiden(
        adata, resolution=params.resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False
    )
    if params.umap:
        sc.tl.umap(adata, random_state=seed)
