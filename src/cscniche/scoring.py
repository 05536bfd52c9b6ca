"""Per-cell stemness scores, marker expression and the CSC call."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

log = logging.getLogger(__name__)

CSC_MARKERS = ("PROM1", "THY1", "CD44", "EPCAM")


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file: ``name<TAB>description<TAB>gene...`` per line; genes de-duplicated in order."""
    sets: dict[str, list[str]] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            raise ValueError(f"{path}:{n}: a GMT line needs a name, a description and at least one gene")
        name = parts[0].strip()
        if name in sets:
            raise ValueError(f"{path}:{n}: gene set '{name}' is defined twice")
        sets[name] = list(dict.fromkeys(g.strip() for g in parts[2:] if g.strip()))
    return sets


def signature_coverage(var_names, gene_sets: dict[str, list[str]]) -> pd.DataFrame:
    """One row per set: n_genes, n_present, fraction_present, missing (comma-separated)."""
    present = set(map(str, var_names))
    rows = []
    for name, genes in gene_sets.items():
        miss = [g for g in genes if g not in present]
        rows.append(
            {
                "signature": name,
                "n_genes": len(genes),
                "n_present": len(genes) - len(miss),
                "fraction_present": (len(genes) - len(miss)) / len(genes) if genes else 0.0,
                "missing": ",".join(miss),
            }
        )
    return pd.DataFrame(rows)


def check_coverage(coverage: pd.DataFrame, *, min_fraction: float, sample: str | None = None) -> None:
    """Warn for each set with missing genes; raise when a set falls below ``min_fraction`` present."""
    who = f"sample '{sample}': " if sample else ""
    for row in coverage.itertuples():
        if row.n_present < row.n_genes:
            log.warning(
                "%ssignature %s: %d of %d genes present (%.0f%%); missing: %s",
                who,
                row.signature,
                row.n_present,
                row.n_genes,
                100 * row.fraction_present,
                row.missing,
            )
    bad = coverage[(coverage["fraction_present"] < min_fraction) | (coverage["n_present"] == 0)]
    if len(bad):
        desc = "; ".join(f"{r.signature} {r.n_present}/{r.n_genes} (missing {r.missing})" for r in bad.itertuples())
        raise ValueError(
            f"{who}signatures below the minimum fraction of genes present ({min_fraction:g}): {desc}; "
            "lower scoring.min_fraction_present in the config or remove the signature"
        )


def score_signatures(
    adata: ad.AnnData,
    gene_sets: dict[str, list[str]],
    *,
    min_fraction: float = 0.5,
    ctrl_size: int = 50,
    seed: int = 0,
    sample: str | None = None,
) -> pd.DataFrame:
    """Score every cell for every gene set with :func:`scanpy.tl.score_genes` on log-normalised ``X``.

    Writes ``obs['score_<set>']`` and returns the coverage table (see :func:`signature_coverage`).
    Missing genes are warned about with the list and fraction present; a set below ``min_fraction``
    stops the run with a ValueError.
    """
    coverage = signature_coverage(adata.var_names, gene_sets)
    check_coverage(coverage, min_fraction=min_fraction, sample=sample)
    present = set(adata.var_names)
    for name, genes in gene_sets.items():
        genes = [g for g in genes if g in present]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            sc.tl.score_genes(
                adata,
                genes,
                ctrl_size=min(ctrl_size, max(1, adata.n_vars - len(genes))),
                score_name=f"score_{name}",
                random_state=seed,
                use_raw=False,
            )
    return coverage


def marker_expression(adata: ad.AnnData, genes=CSC_MARKERS) -> list[str]:
    """Write ``obs['expr_<gene>']`` (log-normalised) and ``obs['detected_<gene>']`` (count > 0) per marker.

    Markers absent from the data are skipped (they are reported by the coverage table).
    """
    done = []
    for g in genes:
        if g not in adata.var_names:
            continue
        i = adata.var_names.get_loc(g)
        x = adata.X[:, i]
        c = adata.layers["counts"][:, i]
        x = x.toarray().ravel() if sparse.issparse(x) else np.asarray(x).ravel()
        c = c.toarray().ravel() if sparse.issparse(c) else np.asarray(c).ravel()
        adata.obs[f"expr_{g}"] = x.astype(np.float64)
        adata.obs[f"detected_{g}"] = c > 0
        done.append(g)
    return done


def stemness_index(adata: ad.AnnData, signatures: list[str], *, reference: np.ndarray | None = None) -> np.ndarray:
    """Mean of the standardised ``score_<set>`` columns.

    Each score is centred and scaled by its mean and standard deviation over the ``reference``
    cells (boolean mask; by default the malignant cells when there are at least 10, else all cells),
    so the index measures stem-like character relative to the tumour cells of the sample.
    """
    if reference is None:
        mal = (adata.obs["compartment"] == "malignant").to_numpy() if "compartment" in adata.obs else None
        reference = mal if mal is not None and mal.sum() >= 10 else np.ones(adata.n_obs, dtype=bool)
    cols = [f"score_{s}" for s in signatures]
    m = adata.obs[cols].to_numpy(dtype=np.float64)
    mu = m[reference].mean(axis=0)
    sd = m[reference].std(axis=0)
    sd[~(sd > 0)] = 1.0
    return ((m - mu) / sd).mean(axis=1)


def call_csc(adata: ad.AnnData, *, quantile: float = 0.9, key: str = "stemness") -> int:
    """Call CSC (``obs['csc']``) among malignant cells: stemness at or above the ``quantile`` of malignant cells.

    The malignant cells are ``obs['malignant']`` (bool) when present, else the cells of the
    malignant compartment (and ``obs['malignant']`` is written). Non-malignant cells are never CSC.
    ``obs['group']`` becomes CSC, nonCSC (malignant) or the cell type. Returns the number of CSC;
    0 with a warning when the sample has no malignant cell.
    """
    if "malignant" not in adata.obs:
        adata.obs["malignant"] = (adata.obs["compartment"] == "malignant").to_numpy()
    mal = adata.obs["malignant"].to_numpy(dtype=bool)
    csc = np.zeros(adata.n_obs, dtype=bool)
    if mal.sum() == 0:
        log.warning("no malignant cells: no CSC can be called")
    else:
        thr = np.quantile(adata.obs[key].to_numpy()[mal], quantile)
        csc = mal & (adata.obs[key].to_numpy() >= thr)
        adata.uns.setdefault("cscniche", {})["csc_threshold"] = float(thr)
    adata.obs["csc"] = csc
    group = np.where(csc, "CSC", np.where(mal, "nonCSC", adata.obs["cell_type"].astype(str)))
    adata.obs["group"] = group
    return int(csc.sum())
