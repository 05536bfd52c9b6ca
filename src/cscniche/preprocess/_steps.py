"""The preprocessing steps (rules ``qc`` and ``embed``, which also annotates): AnnData or paths in, AnnData/tables out."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd

from .._errors import InputError
from .._params import AnnotationParams, EmbeddingParams, QcParams, ScaleParams
from . import _annotate as _ann
from . import _embed as _emb
from . import _qc


def qc(
    adata: ad.AnnData, *, sample: str, qc: QcParams = QcParams(), cell_type_key: str | None = None, seed: int = 0
) -> tuple[ad.AnnData, pd.DataFrame]:
    """QC-filter and log-normalise in memory.

    Parameters
    ----------
    adata
        Raw counts in ``X``.
    sample
        Sample id, written to the QC table.
    qc
        The ``qc`` config section (adaptive or fixed thresholds, doublets, ``target_sum``).
    cell_type_key
        ``obs`` column of author cell-type labels: the QC table then has a row per cell type.
    seed
        Seed of the doublet detection (Scrublet).

    Returns
    -------
    The filtered, normalised AnnData and the QC table (:func:`cscniche.preprocess._qc.qc_table`).

    Sets
    ----
    ``obs['n_genes']``, ``obs['total_counts']``, ``obs['pct_counts_mt']``, ``obs['doublet_score']``,
    ``obs['predicted_doublet']`` (unless ``qc.doublets`` is 'off'); ``layers['counts']`` (raw counts).
    """
    adata, table = _qc.qc_filter(adata, sample=sample, cell_type_key=cell_type_key, seed=seed, qc=qc)
    _emb.normalise(adata, target_sum=qc.target_sum)
    return adata, table


#: QC-filter the raw counts of ``src`` into ``dst``, streamed (the step of rule ``qc``; ``dst`` keeps raw counts,
#: the embedding step normalises): :func:`cscniche.preprocess._qc.qc_filter_file`, returns the QC table
qc_file = _qc.qc_filter_file


def embed_sample(
    path: str | Path,
    *,
    sample: str,
    embedding: EmbeddingParams = EmbeddingParams(),
    qc: QcParams = QcParams(),
    scale: ScaleParams = ScaleParams(),
    seed: int = 0,
    annotation: AnnotationParams | None = None,
    cell_type_key: str | None = None,
) -> ad.AnnData:
    """Read the QC-passed counts (a sketch of ``scale.max_cells`` when there are more), normalise, :func:`embed`
    and, with ``annotation`` (the ``annotation`` config section), :func:`annotate` (the step of rule ``embed``).

    Returns
    -------
    The analysed AnnData (log-normalised ``X``, raw ``layers['counts']``).

    Sets
    ----
    Those of :func:`embed`, and ``uns['cscniche']['sketch']`` (cells read and in the file); with ``annotation``,
    those of :func:`annotate`.
    """
    adata = _emb.read_for_analysis(
        path, sample=sample, max_cells=scale.max_cells, target_sum=qc.target_sum, seed=seed,
        spatial_sketch=scale.spatial_sketch,
    )  # fmt: skip
    embed(adata, embedding=embedding, seed=seed)
    if annotation is not None:
        annotate(adata, cell_type_key=cell_type_key, markers=annotation.markers, compartments=annotation.compartments)
    return adata


def embed(adata: ad.AnnData, *, embedding: EmbeddingParams = EmbeddingParams(), seed: int = 0) -> None:
    """HVGs, PCA, kNN graph, Leiden clusters and UMAP, in place.

    Sets
    ----
    ``var['highly_variable']``, ``obsm['X_pca']``, ``obsp['distances']``/``obsp['connectivities']``,
    ``obs['leiden']`` and, with ``embedding.umap``, ``obsm['X_umap']``.
    """
    _emb.embed_and_cluster(adata, params=embedding, seed=seed)


def annotate(
    adata: ad.AnnData,
    *,
    cell_type_key: str | None = None,
    markers: str | Path | None = None,
    compartments: str | Path | None = None,
) -> None:
    """Cell types and compartments in place (author labels when ``cell_type_key``, else markers).

    ``markers`` and ``compartments`` default to the ``annotation`` section's tables.

    Sets
    ----
    ``obs['cell_type']``, ``obs['cell_type_source']``, ``obs['compartment']``.
    """
    markers = markers or AnnotationParams().markers
    compartments = compartments or AnnotationParams().compartments
    try:
        _ann.assign_cell_types(
            adata,
            cell_type_key=cell_type_key or None,
            markers=_ann.read_markers(markers),
            rules=_ann.read_compartment_rules(compartments),
        )
    except ValueError as exc:
        raise InputError(
            f"cell typing failed: {exc}; name author labels in the sample-sheet column cell_type_key or fix the "
            f"marker table '{markers}' (config annotation.markers)"
        ) from None
