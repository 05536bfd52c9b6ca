"""CSC definitions and sketch facts shared by the niche tables (``definition`` and ``sketch`` columns).

Contract with the stemness step: ``adata.uns['cscniche']['csc_definitions']`` lists definition names and each
has a boolean ``obs['csc_<name>']`` (False for non-malignant cells); ``obs['csc']`` is the primary definition.
Without the list, the one definition is ``primary`` (``obs['csc']``). ``continuous`` names the threshold-free
rows (association with ``obs['stemness']``) and is never a CSC definition.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np

log = logging.getLogger(__name__)

PRIMARY = "primary"
CONTINUOUS = "continuous"
MALIGNANT_GROUPS = ("CSC", "nonCSC")


def malignant_mask(adata: ad.AnnData) -> np.ndarray:
    """``obs['malignant']``, else the cells whose ``group`` is CSC or nonCSC, else ``compartment == 'malignant'``."""
    obs = adata.obs
    if "malignant" in obs:
        return obs["malignant"].to_numpy(dtype=bool)
    if "group" in obs:
        return np.isin(obs["group"].astype(str).to_numpy(), MALIGNANT_GROUPS)
    return obs["compartment"].astype(str).to_numpy() == "malignant"


def definition_names(adata: ad.AnnData) -> list[str]:
    """``uns['cscniche']['csc_definitions']`` as a list of str (an array once read back from .h5ad); [] if unset."""
    listed = adata.uns.get("cscniche", {}).get("csc_definitions")
    return [] if listed is None else [str(n) for n in np.atleast_1d(listed)]


def csc_definitions(adata: ad.AnnData) -> list[tuple[str, np.ndarray]]:
    """``(name, csc flag per cell)`` per CSC definition, the primary one first; flags are False off malignant cells.

    A listed definition without its ``obs['csc_<name>']`` column is skipped with a warning; with no usable
    definition, ``[('primary', obs['csc'])]``.
    """
    mal = malignant_mask(adata)
    names = definition_names(adata)
    out = []
    for name in map(str, names):
        col = f"csc_{name}"
        if col not in adata.obs:
            log.warning("CSC definition '%s' listed but obs['%s'] is missing: skipped", name, col)
            continue
        out.append((name, adata.obs[col].to_numpy(dtype=bool) & mal))
    if not out:
        out = [(PRIMARY, adata.obs["csc"].to_numpy(dtype=bool) & mal)]
    return out


def definition_groups(adata: ad.AnnData, csc: np.ndarray) -> np.ndarray:
    """``obs['group']`` with the malignant cells relabelled CSC / nonCSC by ``csc`` (one definition)."""
    group = adata.obs["group"].astype(str).to_numpy().copy()
    mal = malignant_mask(adata)
    group[mal] = np.where(np.asarray(csc, dtype=bool)[mal], "CSC", "nonCSC")
    stray = ~mal & np.isin(group, MALIGNANT_GROUPS)  # not malignant under this call: its cell type
    if stray.any():
        group[stray] = adata.obs["cell_type"].astype(str).to_numpy()[stray]
    return group


def sketch_info(adata: ad.AnnData) -> tuple[bool, str]:
    """Whether the AnnData is a sketch (``uns['cscniche']['sketch']``) and a note for spatial tables.

    A region sketch (``kind = 'region'``, the default for slides) keeps physical neighbourhoods. On a uniform
    sketch the spatial graph is built on the analysed cells only, so each cell's k nearest cells reach
    further than in the tissue (physical neighbourhoods widen roughly by sqrt(n_qc / n_analysed)).
    """
    info = adata.uns.get("cscniche", {}).get("sketch", {}) or {}
    n_qc, n_an = int(info.get("n_cells_qc", 0) or 0), int(info.get("n_cells_analysed", 0) or 0)
    if n_qc and n_an and n_an < n_qc and str(info.get("kind", "uniform")) == "region":
        return True, (
            f"region sketch: the {n_an} of {n_qc} cells nearest the slide's centre; physical neighbourhoods as in "
            "the tissue except at the region's rim; the rest of the slide is not in the niche statistics"
        )
    if n_qc and n_an and n_an < n_qc:
        widen = float(np.sqrt(n_qc / n_an))
        return True, (
            f"sketch of {n_an} of {n_qc} cells: the spatial graph is built on the sketch, so neighbourhoods "
            f"reach ~{widen:.1f}x further than in the tissue"
        )
    return False, ""
