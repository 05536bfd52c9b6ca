"""Immune-checkpoint and antigen-presentation expression per group, CSC vs non-CSC."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._resources import resolve
from .._scipy_stats import false_discovery_control, mannwhitneyu
from .._tables import note_row

log = logging.getLogger(__name__)

COLUMNS = [
    "sample",
    "definition",
    "gene",
    "role",
    "group",
    "n_cells",
    "mean_expr",
    "frac_expr",
    "log2fc_csc_vs_noncsc",
    "rho",
    "p",
    "fdr",
    "sketch",
    "note",
]
#: pseudocount (normalised counts per 10k) in the CSC vs non-CSC fold change
FC_PSEUDOCOUNT = 0.01


def read_checkpoints(path: str | Path) -> pd.DataFrame:
    """Read the checkpoint table: columns ``gene``, ``role``, ``axis``, ``source``."""
    path = resolve(path)
    df = pd.read_csv(path, sep="\t", comment="#", dtype=str)
    missing = {"gene", "role"} - set(df.columns)
    if missing:
        raise ValueError(f"checkpoint table {path} lacks columns {sorted(missing)}")
    return df


def gene_index(var_names, gene: str) -> int | None:
    """Position of ``gene`` in ``var_names``; also finds panel spellings with '.' or '_' for '-' (CosMx ``HLA.A``)."""
    names = pd.Index(var_names)
    for cand in (gene, gene.replace("-", "."), gene.replace("-", "_")):
        if cand in names:
            return int(names.get_loc(cand))
    return None


class _Columns:
    """The columns of a cells x genes matrix that ``genes`` name, sliced in one pass and kept dense (same dtype),
    looked up by the gene's position in the whole matrix (:func:`_dense_col`).

    A CSR column slice rescans the whole matrix, once per gene; a CSC copy of the whole matrix (the earlier way)
    held another 1.8 GB per matrix on 100,000 cells, twice per table (counts and log-normalised)."""

    def __init__(self, m, var_names, genes):
        found = (gene_index(var_names, g) for g in genes)
        positions = list(dict.fromkeys(i for i in found if i is not None))
        self.where = {i: k for k, i in enumerate(positions)}
        sub = m[:, positions]
        self.values = sub.toarray() if sparse.issparse(sub) else np.asarray(sub)

    def column(self, i: int) -> np.ndarray:
        return self.values[:, self.where[i]]


def _by_column(m, var_names, genes) -> _Columns:
    """The columns of ``m`` for the checkpoint ``genes`` (see :class:`_Columns`)."""
    return _Columns(m, var_names, genes)


def _dense_col(m: _Columns, i: int) -> np.ndarray:
    return m.column(i)


def expressed_enough(det_a: np.ndarray, det_b: np.ndarray, *, min_frac: float, min_cells: int) -> bool:
    """True when >= ``min_frac`` and >= ``min_cells`` cells of at least one group (detection flags) express the gene."""
    for det in (det_a, det_b):
        if det.size and det.sum() >= min_cells and det.mean() >= min_frac:
            return True
    return False


def low_expression_note(min_frac: float, min_cells: int, groups: str) -> str:
    return f"not tested: expressed in fewer than {min_frac:.0%} or {min_cells} cells of {groups}"


def checkpoint_table(
    adata: ad.AnnData,
    checkpoints: pd.DataFrame,
    *,
    sample: str,
    group=None,
    definition: str = "primary",
    min_expr_frac: float = 0.0,
    min_expr_cells: int = 0,
    min_cells: int = 3,
) -> pd.DataFrame:
    """Mean log-normalised expression and fraction expressing per group, and CSC vs non-CSC statistics.

    The CSC vs non-CSC test needs at least ``min_cells`` cells in each group (config
    ``checkpoints.niche_min_cells``): one CSC against 294 others gave FDR 0.05 on Moncada PDAC-A before this rule.

    Groups: ``CSC``, ``nonCSC`` (malignant) and each immune cell type (``obs['group']``, see
    :func:`cscniche.stemness._score.call_csc`). ``log2fc_csc_vs_noncsc`` is
    ``log2((mean_norm_CSC + 0.01) / (mean_norm_nonCSC + 0.01))`` on normalised counts; ``p`` is a
    two-sided Mann-Whitney U test of CSC vs non-CSC cells on log-normalised expression and ``fdr``
    its Benjamini-Hochberg adjustment over the genes. Genes absent from the data are warned about
    and left out. ``note`` is empty, or says why there is no CSC vs non-CSC statistic (``no malignant
    cells``, ``no CSC``, ``no non-CSC malignant cells``; then on every row). No checkpoint gene in the data:
    no rows (the same columns). ``group``: per-cell groups of one CSC definition (default ``obs['group']``),
    named by ``definition``. Minimum expression: a gene is tested only when at least ``min_expr_frac`` and
    ``min_expr_cells`` of the CSC or of the non-CSC cells detect it; otherwise ``p`` is empty and the note
    says so (its fold change stays, for reading).
    """
    group = adata.obs["group"].astype(str).to_numpy() if group is None else np.asarray(group, dtype=str)
    comp = adata.obs["compartment"].astype(str).to_numpy()
    keep_groups = ["CSC", "nonCSC"] + sorted(set(group[comp == "immune"]))
    missing = [g for g in checkpoints["gene"] if gene_index(adata.var_names, g) is None]
    if missing:
        log.warning("sample '%s': checkpoint genes not in the data: %s", sample, ", ".join(missing))
    counts, xc = (_by_column(m, adata.var_names, checkpoints["gene"]) for m in (adata.layers["counts"], adata.X))
    rows = []
    stats = {}
    is_csc = group == "CSC"
    is_non = group == "nonCSC"
    for gene, role in zip(checkpoints["gene"], checkpoints["role"], strict=True):
        i = gene_index(adata.var_names, gene)
        if i is None:
            continue
        x = _dense_col(xc, i).astype(np.float64)
        det = _dense_col(counts, i) > 0
        fc = p = np.nan
        gene_note = ""
        if is_csc.sum() > 0 and is_non.sum() > 0:
            a, b = np.expm1(x[is_csc]).mean(), np.expm1(x[is_non]).mean()
            fc = float(np.log2((a + FC_PSEUDOCOUNT) / (b + FC_PSEUDOCOUNT)))
            if min(is_csc.sum(), is_non.sum()) < min_cells:
                gene_note = f"not tested: fewer than {min_cells} CSC or non-CSC cells"
            elif not expressed_enough(det[is_csc], det[is_non], min_frac=min_expr_frac, min_cells=min_expr_cells):
                gene_note = low_expression_note(min_expr_frac, min_expr_cells, "CSC and of non-CSC")
            elif np.ptp(np.concatenate([x[is_csc], x[is_non]])) > 0:
                p = float(mannwhitneyu(x[is_csc], x[is_non], alternative="two-sided").pvalue)
            else:
                p = 1.0
        stats[gene] = (fc, p, gene_note)
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
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("log2fc_csc_vs_noncsc", "p", "fdr", "note")])
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
        {
            "gene": genes,
            "log2fc_csc_vs_noncsc": [stats[g][0] for g in genes],
            "p": pvals,
            "fdr": fdr,
            "gene_note": [stats[g][2] for g in genes],
        }
    )
    df = df.merge(per_gene, on="gene", how="left")
    missing = _missing_groups_note(is_csc, is_non)
    df["note"] = missing or df["gene_note"]
    if missing:
        log.warning("sample '%s' (%s): no CSC vs non-CSC checkpoint statistics: %s", sample, definition, missing)
    df["definition"] = definition
    df["rho"] = np.nan
    df["sketch"] = False
    return df[COLUMNS]


def continuous_table(
    adata: ad.AnnData, checkpoints: pd.DataFrame, *, sample: str, malignant: np.ndarray
) -> pd.DataFrame:
    """``definition = continuous`` rows: Spearman rho of ``obs['stemness']`` with each checkpoint gene across
    the malignant cells (``group = malignant``; p from :func:`scipy.stats.spearmanr`, BH ``fdr`` over genes)."""
    from ._continuous import gene_association

    mal = np.asarray(malignant, dtype=bool)
    rows = []
    if "stemness" not in adata.obs or not mal.any():
        note = "no stemness" if "stemness" not in adata.obs else "no malignant cells"
        return note_row(COLUMNS, note, blank=("gene", "role", "group"), sample=sample, definition="continuous")
    stem = adata.obs["stemness"].to_numpy(dtype=np.float64)[mal]
    counts, xc = (_by_column(m, adata.var_names, checkpoints["gene"]) for m in (adata.layers["counts"], adata.X))
    for gene, role in zip(checkpoints["gene"], checkpoints["role"], strict=True):
        i = gene_index(adata.var_names, gene)
        if i is None:
            continue
        x = _dense_col(xc, i).astype(np.float64)[mal]
        det = _dense_col(counts, i)[mal] > 0
        rho, p = gene_association(stem, x)
        rows.append(
            {
                "sample": sample,
                "definition": "continuous",
                "gene": gene,
                "role": role,
                "group": "malignant",
                "n_cells": int(mal.sum()),
                "mean_expr": float(x.mean()),
                "frac_expr": float(det.mean()),
                "log2fc_csc_vs_noncsc": np.nan,
                "rho": rho,
                "p": p,
                "note": "" if np.isfinite(p) else "stemness or expression constant across malignant cells",
            }
        )
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("fdr", "sketch")])
    df["fdr"] = np.nan
    ok = df["p"].notna().to_numpy()
    if ok.any():
        df.loc[ok, "fdr"] = false_discovery_control(df.loc[ok, "p"].to_numpy(dtype=float), method="bh")
    df["sketch"] = False
    return df[COLUMNS]


def _missing_groups_note(is_csc: np.ndarray, is_non: np.ndarray) -> str:
    """'' when there are CSC and non-CSC malignant cells, else which of them are missing."""
    if not is_csc.any() and not is_non.any():
        return "no malignant cells"
    if not is_csc.any():
        return "no CSC"
    return "" if is_non.any() else "no non-CSC malignant cells"


PSEUDOBULK_COLUMNS = ["sample", "group", "gene", "role", "n_cells", "counts", "library_size"]


def checkpoint_pseudobulk(adata: ad.AnnData, checkpoints: pd.DataFrame, *, sample: str, group=None) -> pd.DataFrame:
    """Raw counts of each checkpoint gene summed over the cells of each group (CSC, nonCSC, immune types).

    ``library_size`` is the group's total count over all genes, for normalising across samples and
    patients (the pseudobulk input of :func:`cscniche.cohort._statistics.pseudobulk_test`). ``group``: per-cell
    groups of one CSC definition (default ``obs['group']``).
    """
    group = adata.obs["group"].astype(str).to_numpy() if group is None else np.asarray(group, dtype=str)
    comp = adata.obs["compartment"].astype(str).to_numpy()
    groups = [g for g in ("CSC", "nonCSC") if (group == g).any()] + sorted(set(group[comp == "immune"]) - {"CSC"})
    counts = sparse.csr_matrix(adata.layers["counts"])
    lib = np.asarray(counts.sum(axis=1)).ravel()
    counts = _by_column(counts, adata.var_names, checkpoints["gene"])
    rows = []
    for gene, role in zip(checkpoints["gene"], checkpoints["role"], strict=True):
        i = gene_index(adata.var_names, gene)
        if i is None:
            continue
        col = _dense_col(counts, i)
        for g in groups:
            sel = group == g
            rows.append(
                {
                    "sample": sample,
                    "group": g,
                    "gene": gene,
                    "role": role,
                    "n_cells": int(sel.sum()),
                    "counts": float(col[sel].sum()),
                    "library_size": float(lib[sel].sum()),
                }
            )
    return pd.DataFrame(rows, columns=PSEUDOBULK_COLUMNS)


NICHE_COLUMNS = [
    "sample",
    "neighbourhood",
    "definition",
    "immune_type",
    "gene",
    "role",
    "n_in_niche",
    "n_elsewhere",
    "mean_in_niche",
    "mean_elsewhere",
    "frac_in_niche",
    "frac_elsewhere",
    "log2fc_niche_vs_elsewhere",
    "p",
    "fdr",
    "sketch",
    "note",
]


def niche_checkpoint_table(
    adata: ad.AnnData,
    checkpoints: pd.DataFrame,
    in_niche,
    *,
    sample: str,
    neighbourhood: str,
    min_cells: int = 3,
    group=None,
    definition: str = "primary",
    min_expr_frac: float = 0.0,
    min_expr_cells: int = 0,
) -> pd.DataFrame:
    """Checkpoint expression of the immune cells inside CSC neighbourhoods vs the same type elsewhere.

    ``in_niche`` flags the cells that neighbour at least one CSC (:func:`cscniche.niche._graphs.csc_niche_members`).
    Per immune type and gene: mean log-normalised expression and fraction expressing in and outside the
    niche, ``log2((mean_norm_in + 0.01) / (mean_norm_out + 0.01))``, two-sided Mann-Whitney U p, and BH FDR
    over the rows tested. Types with fewer than ``min_cells`` cells on either side get no test (a note), as do
    genes detected in fewer than ``min_expr_frac`` or ``min_expr_cells`` of the cells in and of those outside
    the niche. ``group``: the per-cell groups of the CSC definition ``definition`` (default ``obs['group']``).
    """
    group = adata.obs["group"].astype(str).to_numpy() if group is None else np.asarray(group, dtype=str)
    comp = adata.obs["compartment"].astype(str).to_numpy()
    in_niche = np.asarray(in_niche, dtype=bool)
    imm = (comp == "immune") & ~np.isin(group, ["CSC", "nonCSC"])

    def _note(note: str) -> pd.DataFrame:
        blank = ("immune_type", "gene", "role")
        return note_row(
            NICHE_COLUMNS, note, blank=blank, sample=sample, neighbourhood=neighbourhood, definition=definition
        )

    if not imm.any():
        return _note("no immune cells")
    if not (group == "CSC").any():
        return _note("no CSC")
    counts, xc = (_by_column(m, adata.var_names, checkpoints["gene"]) for m in (adata.layers["counts"], adata.X))
    cols = {}
    for gene, role in zip(checkpoints["gene"], checkpoints["role"], strict=True):
        i = gene_index(adata.var_names, gene)
        if i is not None:
            cols[gene] = (role, _dense_col(xc, i).astype(np.float64), _dense_col(counts, i) > 0)
    rows = []
    for t in sorted(set(group[imm])):
        sel_t = imm & (group == t)
        a, b = sel_t & in_niche, sel_t & ~in_niche
        for gene, (role, x, det) in cols.items():
            row = {
                "sample": sample,
                "neighbourhood": neighbourhood,
                "definition": definition,
                "immune_type": t,
                "gene": gene,
                "role": role,
                "n_in_niche": int(a.sum()),
                "n_elsewhere": int(b.sum()),
                "mean_in_niche": float(x[a].mean()) if a.any() else np.nan,
                "mean_elsewhere": float(x[b].mean()) if b.any() else np.nan,
                "frac_in_niche": float(det[a].mean()) if a.any() else np.nan,
                "frac_elsewhere": float(det[b].mean()) if b.any() else np.nan,
                "log2fc_niche_vs_elsewhere": np.nan,
                "p": np.nan,
                "note": "",
            }
            if a.sum() < min_cells or b.sum() < min_cells:
                row["note"] = f"fewer than {min_cells} cells in or outside the CSC niche"
            elif not expressed_enough(det[a], det[b], min_frac=min_expr_frac, min_cells=min_expr_cells):
                ma, mb = np.expm1(x[a]).mean(), np.expm1(x[b]).mean()
                row["log2fc_niche_vs_elsewhere"] = float(np.log2((ma + FC_PSEUDOCOUNT) / (mb + FC_PSEUDOCOUNT)))
                row["note"] = low_expression_note(
                    min_expr_frac, min_expr_cells, "the type in and of it outside the niche"
                )
            else:
                ma, mb = np.expm1(x[a]).mean(), np.expm1(x[b]).mean()
                row["log2fc_niche_vs_elsewhere"] = float(np.log2((ma + FC_PSEUDOCOUNT) / (mb + FC_PSEUDOCOUNT)))
                both = np.concatenate([x[a], x[b]])
                row["p"] = float(mannwhitneyu(x[a], x[b], alternative="two-sided").pvalue) if np.ptp(both) > 0 else 1.0
            rows.append(row)
    if not rows:
        return _note("no checkpoint gene in the data")
    df = pd.DataFrame(rows)
    df["fdr"] = np.nan
    ok = df["p"].notna().to_numpy()
    if ok.any():
        df.loc[ok, "fdr"] = false_discovery_control(df.loc[ok, "p"].to_numpy(), method="bh")
    df["sketch"] = False
    return df[NICHE_COLUMNS]
