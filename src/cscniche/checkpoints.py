"""Immune-checkpoint and antigen-presentation expression per group, CSC vs non-CSC."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import false_discovery_control, mannwhitneyu

log = logging.getLogger(__name__)

COLUMNS = [
    "sample",
    "gene",
    "role",
    "group",
    "n_cells",
    "mean_expr",
    "frac_expr",
    "log2fc_csc_vs_noncsc",
    "p",
    "fdr",
]
#: pseudocount (normalised counts per 10k) in the CSC vs non-CSC fold change
FC_PSEUDOCOUNT = 0.01


def read_checkpoints(path: str | Path) -> pd.DataFrame:
    """Read the checkpoint table: columns ``gene``, ``role``, ``axis``, ``source``."""
    df = pd.read_csv(path, sep="\t", comment="#", dtype=str)
    missing = {"gene", "role"} - set(df.columns)
    if missing:
        raise ValueError(f"checkpoint table {path} lacks columns {sorted(missing)}")
    return df


def _dense_col(m, i: int) -> np.ndarray:
    c = m[:, i]
    return c.toarray().ravel() if sparse.issparse(c) else np.asarray(c).ravel()


def checkpoint_table(adata: ad.AnnData, checkpoints: pd.DataFrame, *, sample: str) -> pd.DataFrame:
    """Mean log-normalised expression and fraction expressing per group, and CSC vs non-CSC statistics.

    Groups: ``CSC``, ``nonCSC`` (malignant) and each immune cell type (``obs['group']``, see
    :func:`cscniche.scoring.call_csc`). ``log2fc_csc_vs_noncsc`` is
    ``log2((mean_norm_CSC + 0.01) / (mean_norm_nonCSC + 0.01))`` on normalised counts; ``p`` is a
    two-sided Mann-Whitney U test of CSC vs non-CSC cells on log-normalised expression and ``fdr``
    its Benjamini-Hochberg adjustment over the genes. Genes absent from the data are warned about
    and left out.
    """
    group = adata.obs["group"].astype(str).to_numpy()
    comp = adata.obs["compartment"].astype(str).to_numpy()
    keep_groups = ["CSC", "nonCSC"] + sorted(set(group[comp == "immune"]))
    missing = [g for g in checkpoints["gene"] if g not in adata.var_names]
    if missing:
        log.warning("sample '%s': checkpoint genes not in the data: %s", sample, ", ".join(missing))
    counts = adata.layers["counts"]
    rows = []
    stats = {}
    is_csc = group == "CSC"
    is_non = group == "nonCSC"
    for gene, role in zip(checkpoints["gene"], checkpoints["role"], strict=True):
        if gene not in adata.var_names:
            continue
        i = adata.var_names.get_loc(gene)
        x = _dense_col(adata.X, i).astype(np.float64)
        det = _dense_col(counts, i) > 0
        fc = p = np.nan
        if is_csc.sum() > 0 and is_non.sum() > 0:
            a, b = np.expm1(x[is_csc]).mean(), np.expm1(x[is_non]).mean()
            fc = float(np.log2((a + FC_PSEUDOCOUNT) / (b + FC_PSEUDOCOUNT)))
            if np.ptp(np.concatenate([x[is_csc], x[is_non]])) > 0:
                p = float(mannwhitneyu(x[is_csc], x[is_non], alternative="two-sided").pvalue)
            else:
                p = 1.0
        stats[gene] = (fc, p)
        for g in keep_groups:
            sel = group == g
            n = int(sel.sum())
            rows.append(
                {
                    "sample": sample,
                    "gene": gene,
                    "role": role,
                    "group": g,
                    "n_cells": n,
                    "mean_expr": float(x[sel].mean()) if n else np.nan,
                    "frac_expr": float(det[sel].mean()) if n else np.nan,
                }
            )
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("log2fc_csc_vs_noncsc", "p", "fdr")])
    if not stats:
        log.warning("sample '%s': no checkpoint gene is in the data", sample)
        return pd.DataFrame(columns=COLUMNS)
    genes = list(stats)
    pvals = np.array([stats[g][1] for g in genes], dtype=float)
    fdr = np.full(pvals.shape, np.nan)
    ok = np.isfinite(pvals)
    if ok.any():
        fdr[ok] = false_discovery_control(pvals[ok], method="bh")
    per_gene = pd.DataFrame(
        {"gene": genes, "log2fc_csc_vs_noncsc": [stats[g][0] for g in genes], "p": pvals, "fdr": fdr}
    )
    return df.merge(per_gene, on="gene", how="left")[COLUMNS]
