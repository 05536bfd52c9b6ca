"""Marker panels per tumour type, marker phenotypes per cell, and CSC definitions side by side (issue 15 items 2-4).

* **Panel** (:func:`read_panel`): the rows of ``cscniche:marker_panels.tsv`` for one panel (``liver`` by default; a
  sample's ``tumour_type`` or ``scoring.marker_panel`` picks another). Its positively gated markers form the
  ``CSC_MARKERS`` component of the stemness index; its markers get positivity columns; its phenotypes are counted.
* **Phenotypes** (:func:`add_phenotypes`): dropout-aware positivity per marker
  (:func:`cscniche.stemness.phenotypes.marker_positivity`: kNN-pooled counts, a two-component Poisson mixture
  fitted on the malignant cells against the least-expressing immune/stromal type as background) and one bool
  ``obs`` column per phenotype, named as the panel names it (``PROM1+``, ``CD44+THY1+``, ``CD44+CD24-``).
* **Definitions** (:func:`call_definitions`): ``calibrated`` (pooled-null BH-FDR <= ``alpha``), ``phenotype``
  (malignant cells positive for the configured phenotype), ``quantile`` (top ``1 - quantile`` of the malignant
  cells' stemness). ``obs['csc_<name>']`` per definition (False for non-malignant cells); the first definition is
  the primary one: ``obs['csc']`` and ``obs['group']``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from .._resources import resolve
from . import phenotypes as _ph

log = logging.getLogger(__name__)

#: the CSC definitions the ``csc.definitions`` list may name
DEFINITIONS = ("calibrated", "phenotype", "quantile")
#: name of the index component built from the panel's positively gated markers
MARKER_SET = "CSC_MARKERS"
#: the phenotype definition's default per panel where it is not the panel's first combination. Liver:
#: EPCAM+CD44+ (EpCAM and CD44 mark HCC CSC subsets, Yamashita & Wang, J Clin Invest 2013), not CD44+THY1+
#: (Yang et al. 2008): THY1/CD90 is a fibroblast gene that carcinoma cells rarely transcribe, and CD44+THY1+ was
#: empty among the malignant cells of both real tumours tried (Wu CID4465: 0 THY1+ of 124; Moncada PDAC-A: 12 of
#: 540); on the planted tumour EPCAM+CD44+ had precision 0.81, recall 0.76 and called 1.8 % of a no-stem tumour.
DEFAULT_PHENOTYPES = {"liver": "EPCAM+CD44+"}


@dataclass(frozen=True)
class Panel:
    """One marker panel: its name, markers (every gated gene), index markers (``+`` gates), phenotypes
    (name -> (kind, [(gene, positive)])) in table order, and the default phenotype of the ``phenotype``
    definition (:data:`DEFAULT_PHENOTYPES`, else the panel's first combination: the phenotype its source paper
    found most tumourigenic)."""

    name: str
    tumour_type: str
    markers: tuple[str, ...]
    index_markers: tuple[str, ...]
    phenotypes: dict
    default_phenotype: str


def read_panels(path="cscniche:marker_panels.tsv") -> pd.DataFrame:
    df = pd.read_csv(resolve(path), sep="\t", comment="#", dtype=str)
    need = {"panel", "tumour_type", "phenotype", "kind", "marker", "gate"}
    if need - set(df.columns):
        raise ValueError(f"marker panel table {path} lacks columns {sorted(need - set(df.columns))}")
    return df


def panel_name(tumour_type: str | None, default: str, table: pd.DataFrame) -> str:
    """The panel of a sample: ``tumour_type`` (a panel name, or a word of a panel's tumour type, e.g. ``breast``,
    ``pancreatic``, ``HCC``... case-insensitive) when given, else ``default``."""
    names = list(dict.fromkeys(table["panel"]))
    want = (tumour_type or "").strip()
    if not want or want.lower() in ("nan", "none"):
        want = default
    low = want.lower()
    for n in names:
        if n.lower() == low:
            return n
    aliases = {"hcc": "liver", "hepatocellular": "liver", "pdac": "pancreas", "tnbc": "breast", "luad": "lung"}
    if low in aliases and aliases[low] in names:
        return aliases[low]
    for n, tt in dict(zip(table["panel"], table["tumour_type"], strict=True)).items():
        if low in str(tt).lower().replace("/", " ").split() or low in str(tt).lower():
            return n
    raise ValueError(f"no marker panel for tumour type {want!r}; panels: {names} (see cscniche:marker_panels.tsv)")


def read_panel(name: str = "liver", path="cscniche:marker_panels.tsv", *, tumour_type: str | None = None) -> Panel:
    """The panel ``name`` (or the one of ``tumour_type``) of the panel table."""
    table = read_panels(path)
    name = panel_name(tumour_type, name, table)
    rows = table[table["panel"] == name]
    phen: dict = {}
    for r in rows.itertuples():
        kind, gates = phen.setdefault(r.phenotype, (r.kind, []))
        gates.append((r.marker, r.gate.strip() == "+"))
    markers = tuple(dict.fromkeys(rows["marker"]))
    index_markers = tuple(dict.fromkeys(rows.loc[rows["gate"].str.strip() == "+", "marker"]))
    combos = [p for p, (k, _) in phen.items() if k == "combination"]
    default = DEFAULT_PHENOTYPES.get(name, (combos or list(phen))[0])
    return Panel(name, str(rows["tumour_type"].iloc[0]), markers, index_markers, phen, default)


def add_phenotypes(adata: ad.AnnData, panel: Panel, *, reference_compartments=("immune", "stromal")) -> pd.DataFrame:
    """Marker positivity (``obs['pos_<gene>']``, ``obs['prob_<gene>']``) and one bool column per phenotype of
    the panel (``obs['<phenotype>']``, e.g. ``obs['CD44+THY1+']``; malignant or not). Returns the phenotype
    columns; a phenotype gated on a gene absent from the data is all False, with a warning, and listed in
    ``uns['cscniche']['phenotypes_unmeasurable']`` (its count is NaN in the summary); an any-of phenotype uses
    the genes present.

    The mixture is fitted on the malignant cells (at least 10; else all cells), so the gate splits the tumour
    into marker-high and marker-low cells above the background of the least-expressing immune/stromal type.
    """
    import warnings

    mal = adata.obs["malignant"].to_numpy(dtype=bool) if "malignant" in adata.obs else np.ones(adata.n_obs, bool)
    comp = adata.obs["compartment"].astype(str).to_numpy() if "compartment" in adata.obs else np.full(adata.n_obs, "")
    ref = np.isin(comp, list(reference_compartments))
    groups = np.where(ref, adata.obs["cell_type"].astype(str).to_numpy(), None) if "cell_type" in adata.obs else None
    knn = adata.obsp["connectivities"] if "connectivities" in adata.obsp else None
    counts = adata.layers["counts"] if "counts" in adata.layers else adata.X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pos = _ph.marker_positivity(
            counts,
            panel.markers,
            adata.var_names,
            knn,
            reference_groups=groups,
            fit_cells=mal if mal.sum() >= 10 else None,
        )
    for g in pos.attrs.get("genes", []):
        adata.obs[f"pos_{g}"] = pos[g].to_numpy(dtype=bool)
        adata.obs[f"prob_{g}"] = pos[f"prob_{g}"].to_numpy()
    out = {}
    have = set(pos.attrs.get("genes", []))
    unmeasurable = []
    for name, (kind, gates) in panel.phenotypes.items():
        lacking = [g for g, _ in gates if g not in have]
        if kind == "combination_any" and len(lacking) < len(gates):
            if lacking:  # any-of over the genes the data have: a lower bound
                log.warning("phenotype %s: %s absent from the data; any-of over the others", name, lacking)
            col = np.zeros(adata.n_obs, dtype=bool)
            for g, positive in gates:
                if g in have:
                    col |= pos[g].to_numpy(dtype=bool) if positive else ~pos[g].to_numpy(dtype=bool)
        elif lacking:
            log.warning("phenotype %s: no positivity for %s (absent from the data); not measurable", name, lacking)
            col = np.zeros(adata.n_obs, dtype=bool)
            unmeasurable.append(name)
        else:
            col = np.ones(adata.n_obs, dtype=bool)
            for g, positive in gates:
                col &= pos[g].to_numpy(dtype=bool) if positive else ~pos[g].to_numpy(dtype=bool)
        adata.obs[name] = col
        out[name] = col
    info = adata.uns.setdefault("cscniche", {})
    info["marker_panel"] = panel.name
    info["phenotypes"] = list(panel.phenotypes)
    info["phenotypes_unmeasurable"] = unmeasurable  # gated on a gene the data lack: counted as NaN, not 0
    info["marker_background_source"] = {k: str(v) for k, v in pos.attrs.get("background_source", {}).items()}
    return pd.DataFrame(out, index=adata.obs_names)


def call_definitions(
    adata: ad.AnnData,
    definitions=DEFINITIONS,
    *,
    alpha: float = 0.1,
    quantile: float = 0.9,
    phenotype: str = "",
    key: str = "stemness",
) -> dict[str, int]:
    """``obs['csc_<name>']`` for every definition, ``obs['csc']``/``obs['group']`` for the first; returns the
    CSC count per definition. ``uns['cscniche']['csc_definitions']`` lists the names and
    ``uns['cscniche']['csc_rules']`` describes each."""
    definitions = list(definitions)
    bad = [d for d in definitions if d not in DEFINITIONS]
    if not definitions or bad:
        raise ValueError(f"csc.definitions must be a non-empty list of {list(DEFINITIONS)}; unknown: {bad}")
    if "malignant" not in adata.obs:
        adata.obs["malignant"] = (adata.obs["compartment"] == "malignant").to_numpy()
    mal = adata.obs["malignant"].to_numpy(dtype=bool)
    info = adata.uns.setdefault("cscniche", {})
    rules, counts = {}, {}
    for d in definitions:
        csc = np.zeros(adata.n_obs, dtype=bool)
        if d == "calibrated":
            fdr = (
                adata.obs["csc_fdr"].to_numpy(dtype=np.float64)
                if "csc_fdr" in adata.obs
                else np.full(adata.n_obs, np.nan)
            )
            csc = mal & (np.nan_to_num(fdr, nan=1.0) <= alpha)
            rules[d] = f"malignant and BH-FDR of the pooled random-set null of {key} <= {alpha:g}"
        elif d == "quantile":
            if mal.any():
                thr = float(np.quantile(adata.obs[key].to_numpy()[mal], quantile))
                csc = mal & (adata.obs[key].to_numpy() >= thr)
                info["csc_threshold"] = thr
            rules[d] = f"malignant and {key} >= quantile {quantile:g} of malignant cells"
        else:
            if not phenotype:
                raise ValueError("the phenotype definition needs csc.phenotype (or a marker panel's default)")
            if phenotype not in adata.obs:
                raise ValueError(
                    f"csc.phenotype {phenotype!r} is not a phenotype of the marker panel "
                    f"{info.get('marker_panel', '?')!r}; phenotypes: {info.get('phenotypes', [])}"
                )
            csc = mal & adata.obs[phenotype].to_numpy(dtype=bool)
            rules[d] = f"malignant and {phenotype} (dropout-aware marker positivity)"
        adata.obs[f"csc_{d}"] = csc
        counts[d] = int(csc.sum())
    if not mal.any():
        log.warning("no malignant cells: no CSC can be called")
    primary = adata.obs[f"csc_{definitions[0]}"].to_numpy(dtype=bool)
    adata.obs["csc"] = primary
    adata.obs["group"] = np.where(primary, "CSC", np.where(mal, "nonCSC", adata.obs["cell_type"].astype(str)))
    info["csc_definitions"] = definitions
    info["csc_rules"] = rules
    info["csc_rule"] = f"{definitions[0]}: {rules[definitions[0]]}"
    info["csc_phenotype"] = phenotype
    return counts
