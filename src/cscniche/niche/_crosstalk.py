"""Ligand-receptor crosstalk from CSC and non-CSC malignant cells (senders) to immune cells (receivers).

Inference is LIANA's consensus rank aggregate (:func:`liana.mt.rank_aggregate`) on LIANA's shipped
``consensus`` resource, which loads offline. Checkpoint axes (config ``crosstalk.axes``) are labelled in
the ``axis`` column; an axis pair missing from the consensus resource (e.g. PVR-TIGIT) is added to the
resource for this run and flagged ``in_consensus = False``.

The CSC-minus-non-CSC difference of a pair towards one receiver is the difference of LIANA's
``lr_means`` (mean of the ligand's mean in the sender and the receptor's mean in the receiver; a complex
takes its lowest subunit), i.e. half the difference of the ligand's mean in CSC vs non-CSC cells. Its
p-value permutes the CSC label among the malignant cells (seeded), as the neighbour null does.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import false_discovery_control

from .._params import DEFAULT_AXES as _DEFAULT_AXES
from .._tables import note_row

log = logging.getLogger(__name__)

COLUMNS = [
    "sample",
    "ligand",
    "receptor",
    "source",
    "target",
    "score",
    "p",
    "magnitude_rank",
    "specificity_rank",
    "lrscore",
    "axis",
    "in_consensus",
    "note",
]
DIFF_COLUMNS = [
    "sample",
    "ligand",
    "receptor",
    "target",
    "axis",
    "score_csc",
    "score_noncsc",
    "score_diff",
    "lrscore_diff",
    "magnitude_rank_csc",
    "magnitude_rank_noncsc",
    "p_diff",
    "fdr_diff",
    "n_permutations",
    "note",
]
SENDERS = ("CSC", "nonCSC")

DEFAULT_AXES = list(_DEFAULT_AXES)  # the crosstalk.axes default (cscniche._params)


def _subunits(complex_name: str) -> set[str]:
    return set(str(complex_name).split("_"))


def axis_of(ligand: str, receptor: str, axes: list[dict]) -> str:
    """The axis whose ligand and receptor subunits are all in the pair's complexes ('' when none).

    MIF/CD74 thus labels MIF-CD44_CD74 and MIF-CD74_CXCR4; HLA-E/NKG2A labels HLA-E-KLRC1_KLRD1.
    """
    lig, rec = _subunits(ligand), _subunits(receptor)
    for a in axes:
        if _subunits(a["ligand"]) <= lig and _subunits(a["receptor"]) <= rec:
            return a["axis"]
    return ""


def resource_with_axes(axes: list[dict]) -> tuple[pd.DataFrame, set[tuple[str, str]]]:
    """LIANA's offline ``consensus`` resource plus every axis pair it lacks; returns it and the added pairs."""
    import liana as li

    res = li.resource.select_resource("consensus")[["ligand", "receptor"]].copy()
    added = set()
    for a in axes:
        if not any(axis_of(lg, rc, [a]) for lg, rc in zip(res["ligand"], res["receptor"], strict=True)):
            added.add((a["ligand"], a["receptor"]))
    if added:
        extra = pd.DataFrame(sorted(added), columns=["ligand", "receptor"])
        res = pd.concat([res, extra], ignore_index=True)
    return res, added


def _resource_names(adata: ad.AnnData, resource: pd.DataFrame) -> pd.Index:
    """var_names with panel spellings (``HLA.A``, ``HLA_A``) renamed to the resource's (``HLA-A``)."""
    genes = set()
    for col in ("ligand", "receptor"):
        for c in resource[col]:
            genes |= _subunits(c)
    names = pd.Index(adata.var_names.astype(str))
    present = set(names)
    mapping = {}
    for g in genes:
        if g in present or "-" not in g:
            continue
        for alt in (g.replace("-", "."), g.replace("-", "_")):
            if alt in present:
                mapping[alt] = g
                break
    return pd.Index([mapping.get(n, n) for n in names])


def _note_row(columns: list[str], sample: str, note: str) -> pd.DataFrame:
    return note_row(columns, note, blank=("ligand", "receptor", "source", "target", "axis"), sample=sample)


def ligand_means(x, complexes: list[str], var_names: pd.Index, groups: np.ndarray) -> np.ndarray:
    """Mean expression of each ligand complex (lowest subunit mean) for each row of ``groups`` (bool masks)."""
    x = sparse.csr_matrix(x)
    genes = sorted({g for c in complexes for g in _subunits(c)})
    idx = var_names.get_indexer(genes)
    sub = x[:, idx]
    w = np.asarray(groups, dtype=np.float64)
    tot = w.sum(axis=1, keepdims=True)
    w = np.divide(w, tot, out=np.full_like(w, np.nan), where=tot > 0)
    gm = np.asarray(sparse.csr_matrix(w) @ sub.toarray() if sub.shape[1] else np.zeros((w.shape[0], 0)))
    pos = {g: i for i, g in enumerate(genes)}
    return np.column_stack([gm[:, [pos[g] for g in _subunits(c)]].min(axis=1) for c in complexes])


def crosstalk(
    adata: ad.AnnData,
    *,
    sample: str,
    axes: list[dict] | None = None,
    n_permutations: int = 100,
    expr_prop: float = 0.1,
    min_cells: int = 5,
    max_p: float = 0.05,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """LIANA crosstalk from CSC and non-CSC senders to immune receivers, and the CSC-minus-non-CSC difference.

    Parameters
    ----------
    adata
        Log-normalised ``X``; ``obs['group']`` (CSC, nonCSC, cell types), ``obs['compartment']``,
        ``obs['malignant']``.
    axes
        Checkpoint axes (``axis``, ``ligand``, ``receptor``); :data:`DEFAULT_AXES` when ``None``.
    n_permutations
        Permutations of LIANA's CellPhoneDB method and of the CSC-label null of the difference.
    expr_prop, min_cells
        LIANA's filters: fraction of cells of a group expressing each subunit; smallest group.
    max_p
        Rows kept: every axis pair, and pairs with CellPhoneDB p <= ``max_p`` from either sender.

    Returns
    -------
    ``(table, difference)``: the LIANA rows (columns :data:`COLUMNS`; ``score`` = ``lr_means``,
    ``p`` = CellPhoneDB permutation p, LIANA's consensus ``magnitude_rank``/``specificity_rank``) and
    one row per ligand, receptor and receiver with the CSC-minus-non-CSC difference (:data:`DIFF_COLUMNS`).
    A sample without CSC, non-CSC or immune cells gets one row with a ``note`` in each.
    """
    import liana as li

    axes = DEFAULT_AXES if axes is None else axes
    group = adata.obs["group"].astype(str).to_numpy()
    comp = adata.obs["compartment"].astype(str).to_numpy()
    receivers = sorted(set(group[(comp == "immune") & ~np.isin(group, SENDERS)]))
    sizes = {g: int((group == g).sum()) for g in set(group)}
    receivers = [r for r in receivers if sizes[r] >= min_cells]
    note = ""
    if not receivers:
        note = f"no immune cell type with at least {min_cells} cells"
    elif sizes.get("CSC", 0) < min_cells or sizes.get("nonCSC", 0) < min_cells:
        note = f"fewer than {min_cells} CSC or non-CSC malignant cells"
    if note:
        log.warning("sample '%s': no crosstalk: %s", sample, note)
        return _note_row(COLUMNS, sample, note), _note_row(DIFF_COLUMNS, sample, note)
    resource, added = resource_with_axes(axes)
    a = ad.AnnData(
        X=sparse.csr_matrix(adata.X, dtype=np.float32),
        obs=pd.DataFrame({"group": pd.Categorical(group)}, index=adata.obs_names),
        var=pd.DataFrame(index=_resource_names(adata, resource)),
    )
    a.var_names_make_unique()
    pairs = pd.DataFrame([(s, r) for s in SENDERS for r in receivers], columns=["source", "target"])
    res = li.mt.rank_aggregate(
        a,
        groupby="group",
        resource=resource,
        groupby_pairs=pairs,
        expr_prop=expr_prop,
        min_cells=min_cells,
        use_raw=False,
        n_perms=n_permutations,
        seed=seed,
        return_all_lrs=True,
        inplace=False,
        verbose=False,
    )
    res = res[res["source"].isin(SENDERS) & res["target"].isin(receivers)].copy()
    res["axis"] = [axis_of(lg, rc, axes) for lg, rc in zip(res["ligand_complex"], res["receptor_complex"], strict=True)]
    key = ["ligand_complex", "receptor_complex", "target"]
    keep = res.groupby(key)["cellphone_pvals"].transform("min") <= max_p
    res = res[keep | (res["axis"] != "")]
    table = pd.DataFrame(
        {
            "sample": sample,
            "ligand": res["ligand_complex"].to_numpy(),
            "receptor": res["receptor_complex"].to_numpy(),
            "source": res["source"].astype(str).to_numpy(),
            "target": res["target"].astype(str).to_numpy(),
            "score": res["lr_means"].to_numpy(),
            "p": res["cellphone_pvals"].to_numpy(),
            "magnitude_rank": res["magnitude_rank"].to_numpy(),
            "specificity_rank": res["specificity_rank"].to_numpy(),
            "lrscore": res["lrscore"].to_numpy(),
            "axis": res["axis"].to_numpy(),
            "in_consensus": [
                (lg, rc) not in added for lg, rc in zip(res["ligand_complex"], res["receptor_complex"], strict=True)
            ],
            "note": "",
        }
    )
    table = table.sort_values(["axis", "ligand", "receptor", "target", "source"], key=_axis_first).reset_index(
        drop=True
    )
    diff = _difference(a, table, group, sample=sample, n_permutations=n_permutations, seed=seed)
    return table[COLUMNS], diff


def _axis_first(col: pd.Series) -> pd.Series:
    return col.eq("") if col.name == "axis" else col


def _difference(
    a: ad.AnnData, table: pd.DataFrame, group: np.ndarray, *, sample: str, n_permutations: int, seed: int
) -> pd.DataFrame:
    wide = table.pivot_table(
        index=["ligand", "receptor", "target", "axis"],
        columns="source",
        values=["score", "lrscore", "magnitude_rank"],
        aggfunc="first",
    )
    wide = wide.dropna(subset=[("score", "CSC"), ("score", "nonCSC")]).reset_index()
    if wide.empty:
        return _note_row(DIFF_COLUMNS, sample, "no pair scored for both CSC and non-CSC senders")
    lig = sorted(set(wide["ligand"]))
    mal = np.isin(group, SENDERS)
    is_csc = group[mal] == "CSC"
    xm = sparse.csr_matrix(a.X)[np.flatnonzero(mal)]
    k = int(is_csc.sum())
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_permutations + 1, 2 * xm.shape[0]), dtype=bool)
    for b in range(n_permutations + 1):
        lab = is_csc if b == 0 else np.isin(np.arange(xm.shape[0]), rng.choice(xm.shape[0], k, replace=False))
        masks[b, : xm.shape[0]] = lab
        masks[b, xm.shape[0] :] = ~lab
    n = xm.shape[0]
    means_csc = ligand_means(xm, lig, a.var_names, masks[:, :n])
    means_non = ligand_means(xm, lig, a.var_names, masks[:, n:])
    d = (means_csc - means_non) / 2.0  # lr_means difference: the receptor half cancels
    obs, null = d[0], d[1:]
    hi = (1 + (null >= obs - 1e-12).sum(axis=0)) / (n_permutations + 1)
    lo = (1 + (null <= obs + 1e-12).sum(axis=0)) / (n_permutations + 1)
    p = np.minimum(1.0, 2 * np.minimum(hi, lo))
    p_lig = dict(zip(lig, p, strict=True))
    # one test per ligand (the difference does not depend on receptor or receiver): BH over ligands
    fdr_lig = dict(zip(lig, false_discovery_control(p, method="bh"), strict=True))
    out = pd.DataFrame(
        {
            "sample": sample,
            "ligand": wide["ligand"],
            "receptor": wide["receptor"],
            "target": wide["target"],
            "axis": wide["axis"],
            "score_csc": wide[("score", "CSC")],
            "score_noncsc": wide[("score", "nonCSC")],
            "lrscore_diff": wide[("lrscore", "CSC")] - wide[("lrscore", "nonCSC")],
            "magnitude_rank_csc": wide[("magnitude_rank", "CSC")],
            "magnitude_rank_noncsc": wide[("magnitude_rank", "nonCSC")],
            "p_diff": wide["ligand"].map(p_lig),
            "n_permutations": n_permutations,
            "note": "",
        }
    )
    out.columns = [c if isinstance(c, str) else c[0] for c in out.columns]
    out["score_diff"] = out["score_csc"] - out["score_noncsc"]
    out["fdr_diff"] = out["ligand"].map(fdr_lig)
    return (
        out[DIFF_COLUMNS].sort_values(["axis", "ligand", "receptor", "target"], key=_axis_first).reset_index(drop=True)
    )
