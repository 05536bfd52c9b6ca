"""Cell typing: author labels or marker-based cluster annotation, and compartments."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._resources import resolve

log = logging.getLogger(__name__)

#: ``candidate``: parenchymal/epithelial labels (Epithelial, Hepatocytes, Ductal, Luminal, Basal...) whose
#: cells the CNV step may call malignant (:mod:`cscniche.preprocess.candidates`)
COMPARTMENTS = ("malignant", "candidate", "immune", "stromal", "other")


def read_markers(path: str | Path) -> pd.DataFrame:
    """Read a marker table: columns ``cell_type``, ``compartment``, ``markers`` (comma-separated)."""
    path = resolve(path)
    df = pd.read_csv(path, sep="\t", comment="#", dtype=str)
    missing = {"cell_type", "compartment", "markers"} - set(df.columns)
    if missing:
        raise ValueError(f"marker table {path} lacks columns {sorted(missing)}")
    bad = set(df["compartment"]) - set(COMPARTMENTS)
    if bad:
        raise ValueError(f"marker table {path}: unknown compartments {sorted(bad)}; use {COMPARTMENTS}")
    return df


def read_compartment_rules(path: str | Path) -> list[tuple[re.Pattern, str]]:
    """Read ordered (regex, compartment) rules from a two-column TSV (``pattern``, ``compartment``).

    Compartments: ``malignant``, ``candidate`` (CNV decides), ``immune``, ``stromal``, ``other``. The default
    table is ``cscniche:compartments_anchored.tsv`` (whole-word rules)."""
    path = resolve(path)
    df = pd.read_csv(path, sep="\t", comment="#", dtype=str)
    missing = {"pattern", "compartment"} - set(df.columns)
    if missing:
        raise ValueError(f"compartment rules {path} lack columns {sorted(missing)}")
    rules = []
    for pat, comp in zip(df["pattern"], df["compartment"], strict=True):
        if comp not in COMPARTMENTS:
            raise ValueError(f"compartment rules {path}: unknown compartment '{comp}'; use {COMPARTMENTS}")
        rules.append((re.compile(pat, re.IGNORECASE), comp))
    return rules


def _normalise_label(label: str) -> str:
    return re.sub(r"[_\-/.]+", " ", str(label)).strip().lower()


def compartment_of(labels, rules: list[tuple[re.Pattern, str]]) -> pd.Series:
    """Map each label to a compartment: the first matching rule wins, else ``other``.

    Underscores, dashes, dots and slashes are read as spaces, so ``T_CD4`` and ``T-cells`` match ``\\bt\\b``.
    """
    labels = pd.Series(labels, dtype=str)
    mapping = {}
    for lab in labels.unique():
        norm = _normalise_label(lab)
        mapping[lab] = next((comp for pat, comp in rules if pat.search(norm)), "other")
    return labels.map(mapping)


def _zscore_genes(x, genes_idx: np.ndarray) -> np.ndarray:
    sub = x[:, genes_idx]
    sub = sub.toarray() if sparse.issparse(sub) else np.asarray(sub)
    sub = sub.astype(np.float64)
    sd = sub.std(axis=0)
    sd[sd == 0] = 1.0
    return (sub - sub.mean(axis=0)) / sd


def annotate_by_markers(
    adata: ad.AnnData,
    markers: pd.DataFrame,
    *,
    cluster_key: str = "leiden",
    min_markers: int = 2,
    min_marker_fraction: float = 1 / 3,
) -> pd.DataFrame:
    """Label each cluster with the marker-table cell type whose markers it expresses most.

    A cell type's score in a cell is the mean z-scored log expression of its markers present in
    the data; a cluster takes the type with the highest mean score. A type is only considered
    when at least ``min_markers`` and ``min_marker_fraction`` of its markers are in the data (a
    type judged on one surviving marker would win on that gene alone). Writes ``obs['cell_type']``
    and returns the cluster x type score table (``uns``-ready).
    """
    var_index = {g: i for i, g in enumerate(adata.var_names)}
    scores = {}
    for row in markers.itertuples():
        genes = [g.strip() for g in row.markers.split(",") if g.strip()]
        idx = np.array([var_index[g] for g in genes if g in var_index], dtype=int)
        if idx.size < max(1, min(min_markers, len(genes))) or idx.size < min_marker_fraction * len(genes):
            log.warning(
                "marker-based annotation: %d of %d markers of %s are in the data; type skipped",
                idx.size,
                len(genes),
                row.cell_type,
            )
            continue
        scores[row.cell_type] = _zscore_genes(adata.X, idx).mean(axis=1)
    if not scores:
        raise ValueError("no marker of any cell type in the marker table is in the data")
    per_cell = pd.DataFrame(scores, index=adata.obs_names)
    per_cluster = per_cell.groupby(adata.obs[cluster_key].to_numpy()).mean()
    best = per_cluster.idxmax(axis=1)
    adata.obs["cell_type"] = adata.obs[cluster_key].map(best).astype(str).to_numpy()
    per_cluster.index.name = cluster_key
    return per_cluster


def assign_cell_types(
    adata: ad.AnnData,
    *,
    cell_type_key: str | None,
    markers: pd.DataFrame,
    rules: list[tuple[re.Pattern, str]],
    cluster_key: str = "leiden",
) -> None:
    """Write ``obs['cell_type']``, ``obs['compartment']`` and ``obs['cell_type_source']``.

    With ``cell_type_key`` the author labels are used (missing labels become ``unlabelled``);
    otherwise clusters are annotated by markers. Marker-table types take the table's compartment;
    author labels go through the compartment ``rules``.
    """
    if cell_type_key:
        labels = adata.obs[cell_type_key].astype(str).replace({"nan": "unlabelled", "": "unlabelled"})
        adata.obs["cell_type"] = labels.to_numpy()
        adata.obs["compartment"] = compartment_of(labels.to_numpy(), rules).to_numpy()
        adata.obs["cell_type_source"] = f"author:{cell_type_key}"
    else:
        table = annotate_by_markers(adata, markers, cluster_key=cluster_key)
        adata.uns.setdefault("cscniche", {})["marker_scores"] = table.reset_index().astype({cluster_key: str})
        comp = dict(zip(markers["cell_type"], markers["compartment"], strict=True))
        adata.obs["compartment"] = adata.obs["cell_type"].map(comp).fillna("other").to_numpy()
        adata.obs["cell_type_source"] = "markers"
    adata.obs["compartment"] = pd.Categorical(adata.obs["compartment"], categories=list(COMPARTMENTS))
    counts = adata.obs["compartment"].value_counts().to_dict()
    log.info("compartments: %s", counts)
