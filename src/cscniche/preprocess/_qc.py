"""Quality control: per-cell and per-gene filters, in memory or streamed from an ``.h5ad``."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from .._errors import InputError
from ..load import _ondisk as ondisk
from ..load._readers import diagnose_counts

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
    table, keep = _qc_table(adata.obs, sample=sample, n_genes_in=adata.n_vars, min_genes=min_genes,
                            min_counts=min_counts, max_pct_mt=max_pct_mt)  # fmt: skip
    adata = adata[keep].copy()
    gene_cells = np.asarray((adata.layers["counts"] > 0).sum(axis=0)).ravel()
    adata = adata[:, gene_cells >= min_cells].copy()
    table["n_genes_out"] = adata.n_vars
    adata.obs = adata.obs.drop(columns=["n_genes_by_counts"], errors="ignore")
    return adata, table


def qc_filter_file(
    src: str | Path,
    dst: str | Path,
    *,
    sample: str,
    min_genes: int = 200,
    min_counts: int = 500,
    max_pct_mt: float = 20.0,
    min_cells: int = 0,
) -> pd.DataFrame:
    """:func:`qc_filter` on an ``.h5ad`` of raw counts in ``X``, streamed in blocks of rows; returns the QC table.

    Writes the kept cells and genes to ``dst`` (raw counts in ``X``, no layers; ``obs``/``var`` gain the columns
    :func:`qc_filter` adds), never holding the whole matrix: one pass over ``src``, two when ``min_cells > 0``
    (the genes' detection among the kept cells is known only after the first). Same cells, genes, metrics and
    table as :func:`qc_filter` (tested). On error nothing is left at ``dst``.
    """
    obs = ondisk.read_elem(src, "obs")
    var = ondisk.read_elem(src, "var")
    uns = ondisk.read_elem(src, "uns", {})
    obsm = ondisk.read_elem(src, "obsm", {})
    mt = np.asarray(pd.Index(var.index).astype(str).str.upper().str.startswith("MT-"), dtype=bool)
    n_obs, n_vars = len(obs), len(var)
    n_genes = np.zeros(n_obs, dtype=np.int64)
    total = np.zeros(n_obs, dtype=np.float64)
    total_mt = np.zeros(n_obs, dtype=np.float64)
    gene_cells = np.zeros(n_vars, dtype=np.int64)
    gene_cells_kept = np.zeros(n_vars, dtype=np.int64)
    gene_total = np.zeros(n_vars, dtype=np.float64)

    def keep_of(lo: int, hi: int) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            pct = 100.0 * total_mt[lo:hi] / total[lo:hi]
        return (n_genes[lo:hi] >= min_genes) & (total[lo:hi] >= min_counts) & ~(pct > max_pct_mt)

    writer = ondisk.H5adWriter(dst, var=var, uns=uns) if min_cells <= 0 else None
    try:
        for start, block in ondisk.iter_rows(src):
            stop = start + block.shape[0]
            if start == 0:
                why = diagnose_counts(block) if block.nnz else None
                if why is not None:
                    raise InputError(f"X holds no raw counts ({why}) and there is no counts layer", sample=sample)
            detected = block.copy()
            detected.data = (detected.data > 0).astype(np.float32)
            n_genes[start:stop] = np.asarray(detected.sum(axis=1)).ravel()
            total[start:stop] = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
            total_mt[start:stop] = np.asarray(block[:, mt].sum(axis=1, dtype=np.float64)).ravel() if mt.any() else 0
            gene_cells += np.asarray(detected.sum(axis=0)).ravel().astype(np.int64)
            gene_total += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
            keep = keep_of(start, stop)
            gene_cells_kept += np.asarray(detected[keep].sum(axis=0)).ravel().astype(np.int64)
            if writer is not None:
                writer.append(block[keep])
        with np.errstate(invalid="ignore", divide="ignore"):
            pct_mt = 100.0 * total_mt / total
        metrics = pd.DataFrame(
            {"n_genes": n_genes, "total_counts": total, "total_counts_mt": total_mt, "pct_counts_mt": pct_mt},
            index=obs.index,
        )
        table, keep = _qc_table(metrics, sample=sample, n_genes_in=n_vars, min_genes=min_genes,
                                min_counts=min_counts, max_pct_mt=max_pct_mt)  # fmt: skip
        var = var.assign(
            mt=np.asarray(mt),
            n_cells_by_counts=gene_cells,
            mean_counts=gene_total / n_obs,
            pct_dropout_by_counts=100.0 * (1 - gene_cells / n_obs),
            total_counts=gene_total,
        )
        genes = gene_cells_kept >= min_cells
        if writer is None:
            writer = ondisk.H5adWriter(dst, var=var.loc[genes], uns=uns)
            for start, block in ondisk.iter_rows(src):
                writer.append(block[keep[start : start + block.shape[0]]][:, genes])
        else:
            writer.set_var(var)
        kept = pd.concat([obs, metrics], axis=1).loc[keep]
        writer.set_obs(kept, obsm={k: np.asarray(v)[keep] for k, v in obsm.items()})
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    table["n_genes_out"] = int(genes.sum())
    return table


def _qc_table(
    metrics: pd.DataFrame, *, sample: str, n_genes_in: int, min_genes: int, min_counts: int, max_pct_mt: float
) -> tuple[pd.DataFrame, np.ndarray]:
    """The one-row QC table and the kept-cell mask from per-cell ``n_genes``, ``total_counts``, ``pct_counts_mt``."""
    low_genes = metrics["n_genes"] < min_genes
    low_counts = metrics["total_counts"] < min_counts
    high_mt = metrics["pct_counts_mt"] > max_pct_mt
    keep = ~(low_genes | low_counts | high_mt)
    table = pd.DataFrame(
        {
            "sample": [sample],
            "n_cells_in": [len(metrics)],
            "n_genes_in": [n_genes_in],
            "removed_low_genes": [int(low_genes.sum())],
            "removed_low_counts": [int(low_counts.sum())],
            "removed_high_mt": [int(high_mt.sum())],
            "n_cells_out": [int(keep.sum())],
            "median_genes_per_cell": [float(np.median(metrics["n_genes"]))],
            "median_counts_per_cell": [float(np.median(metrics["total_counts"]))],
            "median_pct_mt": [float(np.median(metrics["pct_counts_mt"]))],
            "min_genes": [min_genes],
            "min_counts": [min_counts],
            "max_pct_mt": [max_pct_mt],
        }
    )
    if keep.sum() == 0:
        raise InputError(
            f"QC removed every cell (min_genes={min_genes}: {int(low_genes.sum())} low, min_counts={min_counts}: "
            f"{int(low_counts.sum())} low, max_pct_mt={max_pct_mt}: {int(high_mt.sum())} high; median genes per cell "
            f"{np.median(metrics['n_genes']):.0f}); lower the qc thresholds in the config",
            sample=sample,
        )
    return table, keep.to_numpy()
