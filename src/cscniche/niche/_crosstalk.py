"""Ligand-receptor crosstalk from CSC and non-CSC malignant cells (senders) to immune cells (receivers).

Inference is LIANA's consensus rank aggregate (:func:`liana.mt.rank_aggregate`) on LIANA's shipped
``consensus`` resource, which loads offline. Checkpoint axes (config ``crosstalk.axes``) are labelled in
the ``axis`` column; an axis pair missing from the consensus resource (e.g. PVR-TIGIT) is added to the
resource for this run and flagged ``in_consensus = False``.

The CSC-vs-non-CSC contrast (``crosstalk_difference.tsv``) involves the receiver (issue 16, item 4). Per
ligand, receptor and receiving immune type, and per CSC definition:

* ``ligand_diff`` = mean ligand expression in CSC minus in non-CSC malignant cells (log-normalised; a complex
  takes its lowest subunit), ``p_ligand`` its two-sided p from permuting the CSC label among malignant cells;
* ``receptor_mean_target`` / ``receptor_frac_target``: the receptor's mean and fraction of expressing cells in
  the receiver (lowest subunit), ``p_receptor`` a one-sided binomial test that more than ``expr_prop`` of the
  receiver's cells express it (every subunit; the largest subunit p);
* ``interaction_diff`` = ``ligand_diff x receptor_mean_target``: how much more ligand CSC offer *to this
  receiver's receptor* (zero when the receiver lacks the receptor);
* ``p`` = max(``p_ligand``, ``p_receptor``), an intersection-union test of "the ligand differs AND the receiver
  expresses the receptor" (valid: each part is a valid test); ``fdr`` is BH over every (ligand, receptor,
  receiver) row of a definition, one hypothesis per row (the old per-ligand p, repeated over receptors and
  receivers and then counted as separate cohort hypotheses, is gone).

LIANA's ``lr_means`` difference (``score_diff``) is kept for reference: it is half the ligand difference and
does not depend on the receiver. LIANA runs once, on the primary (first) CSC definition.
"""

from __future__ import annotations

import contextlib
import logging
from unittest import mock

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._params import DEFAULT_AXES as _DEFAULT_AXES
from .._scipy_stats import false_discovery_control
from .._tables import note_row

log = logging.getLogger(__name__)

COLUMNS = [
    "sample",
    "definition",
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
    "sketch",
    "note",
]
DIFF_COLUMNS = [
    "sample",
    "definition",
    "ligand",
    "receptor",
    "target",
    "axis",
    "n_csc",
    "n_noncsc",
    "ligand_csc",
    "ligand_noncsc",
    "ligand_diff",
    "receptor_mean_target",
    "receptor_frac_target",
    "interaction_diff",
    "score_csc",
    "score_noncsc",
    "score_diff",
    "lrscore_diff",
    "magnitude_rank_csc",
    "magnitude_rank_noncsc",
    "p_ligand",
    "p_receptor",
    "p",
    "fdr",
    "n_permutations",
    "sketch",
    "note",
]
#: plain-language description of the difference table's statistics (for captions and the README)
DIFF_DESCRIPTIONS = {
    "ligand_diff": "mean ligand expression (log-normalised, lowest subunit) in CSC minus in non-CSC malignant cells",
    "receptor_mean_target": "mean receptor expression (lowest subunit) in the receiving immune type",
    "receptor_frac_target": "fraction of the receiver's cells expressing the receptor (lowest subunit)",
    "interaction_diff": "ligand_diff x receptor_mean_target: extra ligand CSC offer to this receiver's receptor",
    "p_ligand": "two-sided permutation p of ligand_diff (CSC label permuted among malignant cells)",
    "p_receptor": "one-sided binomial p that more than expr_prop of the receiver's cells express the receptor",
    "p": "max(p_ligand, p_receptor): intersection-union test, one hypothesis per ligand, receptor and receiver",
    "fdr": "Benjamini-Hochberg over the rows of one definition",
    "score_diff": "LIANA lr_means CSC minus nonCSC (half the ligand difference; the receiver does not enter)",
}
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
    definitions: list[tuple[str, np.ndarray]] | None = None,
    sketch: bool = False,
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
    ``definitions``: ``(name, per-cell group)`` per CSC definition (default ``[('primary', obs['group'])]``);
    LIANA runs on the first with at least ``min_cells`` CSC and non-CSC cells (else the first); the difference
    table has one block per definition (module docstring).
    """
    import liana as li

    axes = DEFAULT_AXES if axes is None else axes
    if definitions is None:
        definitions = [("primary", adata.obs["group"].astype(str).to_numpy())]

    # LIANA runs on the first definition with at least min_cells CSC and non-CSC cells (else the first): with
    # 0 calibrated CSC (most real tumours) the marker-phenotype or quantile groups still get a LIANA table
    def _enough(grp) -> bool:
        grp = np.asarray(grp, dtype=str)
        return min((grp == "CSC").sum(), (grp == "nonCSC").sum()) >= min_cells

    def_name, group = next(((n, g) for n, g in definitions if _enough(g)), definitions[0])
    group = np.asarray(group, dtype=str)
    comp = adata.obs["compartment"].astype(str).to_numpy()
    receivers = sorted(set(group[(comp == "immune") & ~np.isin(group, SENDERS)]))
    sizes = {g: int((group == g).sum()) for g in set(group)}
    receivers = [r for r in receivers if sizes[r] >= min_cells]
    note = ""
    if not receivers:
        note = f"no immune cell type with at least {min_cells} cells"
    elif sizes.get("CSC", 0) < min_cells or sizes.get("nonCSC", 0) < min_cells:
        note = f"fewer than {min_cells} CSC or non-CSC malignant cells"
    if not receivers:
        log.warning("sample '%s': no crosstalk: %s", sample, note)
        t, d = _note_row(COLUMNS, sample, note), _note_row(DIFF_COLUMNS, sample, note)
        t["definition"], d["definition"], t["sketch"], d["sketch"] = def_name, "", sketch, sketch
        return t[COLUMNS], d[DIFF_COLUMNS]
    if note:  # the primary definition has too few CSC for LIANA; other definitions may still be contrasted
        log.warning("sample '%s' (%s): no LIANA crosstalk: %s", sample, def_name, note)
    resource, added = resource_with_axes(axes)
    a = ad.AnnData(
        X=sparse.csr_matrix(adata.X, dtype=np.float32),
        obs=pd.DataFrame({"group": pd.Categorical(group)}, index=adata.obs_names),
        var=pd.DataFrame(index=_resource_names(adata, resource)),
    )
    a.var_names_make_unique()
    if note:
        table = _note_row(COLUMNS, sample, note)
    else:
        table = _liana(
            a, li, resource, added, receivers, axes, sample, expr_prop, min_cells, n_permutations, max_p, seed
        )
    table["definition"], table["sketch"] = def_name, sketch
    pairs = _pairs(table, a, resource, axes)
    diffs = []
    # receivers are immune cells: their receptor statistics serve every CSC definition
    rstats = receiver_stats(a.X, a.var_names, sorted(set(pairs["receptor"])), group, receivers, expr_prop)
    for name, grp in definitions:
        grp = np.asarray(grp, dtype=str)
        d = _difference(
            a, pairs, grp, receivers, table if name == def_name else None, sample=sample,
            n_permutations=n_permutations, expr_prop=expr_prop, min_cells=min_cells, seed=seed, rstats=rstats,
        )  # fmt: skip
        d["definition"] = name
        diffs.append(d)
    diff = pd.concat(diffs, ignore_index=True)
    diff["sketch"] = sketch
    return table[COLUMNS], diff[DIFF_COLUMNS]


def filter_resource(resource: pd.DataFrame, var_names) -> pd.DataFrame:
    """LIANA's ``filter_resource`` with hashed membership (same rows, same order).

    LIANA keeps an (exploded) resource row when its ligand and receptor subunits are in ``var_names`` and, for a
    complex, every subunit of both partners is. It tests membership with ``np.isin`` on object arrays, which
    numpy runs as one comparison per (row, gene): ~4 s per sample on a 20,000-gene matrix. A set gives the same
    answer in milliseconds (``tests/niche/test_crosstalk.py`` checks the frames are equal).
    """
    present = set(map(str, var_names))
    resource = resource[resource["ligand"].isin(present) & resource["receptor"].isin(present)]
    comps = resource[resource["interaction"].str.contains("_")]
    units = comps["ligand_complex"] + "_" + comps["receptor_complex"]
    missing = comps["interaction"][[not all(u in present for u in e.split("_")) for e in units]]
    return resource[~resource["interaction"].isin(missing)]


def perms_cube(
    x,
    n_perms: int,
    labels_mask: np.ndarray,
    seed: int,
    agg_fun=np.mean,
    n_jobs: int = 1,
    verbose: bool = False,
    *,
    chunk: int = 64,
) -> np.ndarray:
    """LIANA's permutation cube of group means (``n_perms x groups x genes``), as sparse products.

    LIANA permutes the rows of ``x`` once per permutation (``rng.permutation``) and averages each group's rows
    with ``np.mean`` on the sparse matrix. The same permutations, drawn in the same order, give a weight matrix
    whose row for (permutation, group) holds ``1/n_group`` (float32, as scipy's sparse mean scales) at the
    permuted positions of the group's cells, in LIANA's summation order; one product per ``chunk`` permutations
    then yields the identical cube (bit for bit, tested) ~3x faster and without copying ``x`` per permutation.
    Only for ``agg_fun = np.mean`` on a sparse ``x`` (:func:`liana_fast_paths` sends other aggregations, e.g.
    CellChat's trimean, to LIANA's own code); ``n_jobs`` and ``verbose`` are accepted for its signature.
    """
    x = sparse.csr_matrix(x)
    rng = np.random.default_rng(seed=seed)
    idx = np.arange(x.shape[0])
    n_lab = labels_mask.shape[1]
    out = np.zeros((n_perms, n_lab, x.shape[1]))
    pos = [np.flatnonzero(labels_mask[:, g]) for g in range(n_lab)]
    w = [np.full(p.size, 1.0 / max(p.size, 1), dtype=x.dtype) for p in pos]
    for start in range(0, n_perms, chunk):
        stop = min(n_perms, start + chunk)
        cols, data, indptr = [], [], [0]
        for _ in range(start, stop):
            perm = rng.permutation(idx)
            for g in range(n_lab):
                cols.append(perm[pos[g]])
                data.append(w[g])
                indptr.append(indptr[-1] + pos[g].size)
        wm = sparse.csr_matrix(
            (np.concatenate(data), np.concatenate(cols), np.asarray(indptr)), shape=((stop - start) * n_lab, x.shape[0])
        )
        out[start:stop] = (wm @ x).toarray().reshape(stop - start, n_lab, x.shape[1])
    return out


@contextlib.contextmanager
def liana_fast_paths():
    """Within the block, LIANA uses :func:`filter_resource` and :func:`perms_cube` (exact equivalents).

    Patched where LIANA looks them up (``liana.method.sc._liana_pipe`` and ``..._get_mean_perms``); a LIANA
    release that renames them runs unpatched (slower, same results).
    """
    import liana.method._pipe_utils._get_mean_perms as _gmp
    import liana.method.sc._liana_pipe as _pipe

    with contextlib.ExitStack() as stack:
        if hasattr(_pipe, "filter_resource"):
            stack.enter_context(mock.patch.object(_pipe, "filter_resource", filter_resource))
        if hasattr(_gmp, "_generate_perms_cube"):
            original = _gmp._generate_perms_cube
            stack.enter_context(mock.patch.object(_gmp, "_generate_perms_cube", _cube_with(original)))
        yield


def _cube_with(original):
    def cube(x, n_perms, labels_mask, seed, agg_fun, n_jobs, verbose):
        if agg_fun is not np.mean or not sparse.issparse(x):
            return original(x, n_perms, labels_mask, seed, agg_fun, n_jobs, verbose)
        return perms_cube(x, n_perms, labels_mask, seed, agg_fun, n_jobs, verbose)

    return cube


def _rank_aggregate(li, a, resource, pairs, expr_prop, min_cells, n_permutations, seed) -> pd.DataFrame:
    return li.mt.rank_aggregate(
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


def _liana(a, li, resource, added, receivers, axes, sample, expr_prop, min_cells, n_permutations, max_p, seed):
    pairs = pd.DataFrame([(s, r) for s in SENDERS for r in receivers], columns=["source", "target"])
    with liana_fast_paths():
        res = _rank_aggregate(li, a, resource, pairs, expr_prop, min_cells, n_permutations, seed)
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
    return table.sort_values(["axis", "ligand", "receptor", "target", "source"], key=_axis_first).reset_index(drop=True)


def _pairs(table: pd.DataFrame, a: ad.AnnData, resource: pd.DataFrame, axes: list[dict]) -> pd.DataFrame:
    """(ligand, receptor, axis) contrasted: LIANA's kept pairs, else (no LIANA run) the axis pairs in the data."""
    ok = table[table["ligand"].fillna("").astype(str) != ""]
    if len(ok):
        return ok[["ligand", "receptor", "axis"]].drop_duplicates().reset_index(drop=True)
    present = set(a.var_names)
    rows = [
        (lg, rc, axis_of(lg, rc, axes))
        for lg, rc in zip(resource["ligand"], resource["receptor"], strict=True)
        if axis_of(lg, rc, axes) and (_subunits(lg) | _subunits(rc)) <= present
    ]
    return pd.DataFrame(rows, columns=["ligand", "receptor", "axis"]).drop_duplicates().reset_index(drop=True)


def _axis_first(col: pd.Series) -> pd.Series:
    return col.eq("") if col.name == "axis" else col


def receiver_stats(
    x, var_names: pd.Index, receptors: list[str], group: np.ndarray, receivers: list[str], expr_prop: float
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """Per (receptor complex, receiver): mean and fraction expressing (lowest subunit) and the binomial p.

    The p is the largest over subunits of the one-sided binomial test that more than ``expr_prop`` of the
    receiver's cells express the subunit (``binom.sf(k - 1, n, expr_prop)``, scipy's ``binomtest(k, n,
    expr_prop, alternative='greater')``). A receptor with a subunit missing from ``var_names`` or an empty
    receiver gets NaNs. One sparse slice per receiver and gene set, not per (receptor, receiver) pair.
    """
    from scipy.stats import binom

    x = sparse.csr_matrix(x)
    genes = sorted({g for c in receptors for g in _subunits(c)} & set(var_names))
    pos = {g: i for i, g in enumerate(genes)}
    sub = x[:, var_names.get_indexer(genes)] if genes else None
    out = {}
    for r in receivers:
        rows = np.flatnonzero(group == r)
        n_r = rows.size
        if n_r and genes:
            s = sub[rows]
            means = np.asarray(s.mean(axis=0)).ravel()
            n_expr = np.asarray((s > 0).sum(axis=0)).ravel()
            p = np.minimum(1.0, binom.sf(n_expr - 1, n_r, expr_prop))
        for c in receptors:
            units = sorted(_subunits(c))
            if not n_r or any(u not in pos for u in units):
                out[(c, r)] = (np.nan, np.nan, np.nan)
                continue
            j = [pos[u] for u in units]
            out[(c, r)] = (float(means[j].min()), float(n_expr[j].min() / n_r), float(p[j].max()))
    return out


def _difference(
    a: ad.AnnData,
    pairs: pd.DataFrame,
    group: np.ndarray,
    receivers: list[str],
    liana_table: pd.DataFrame | None,
    *,
    sample: str,
    n_permutations: int,
    expr_prop: float,
    min_cells: int,
    seed: int,
    rstats: dict[tuple[str, str], tuple[float, float, float]],
) -> pd.DataFrame:
    """The receiver-aware CSC-vs-non-CSC contrast of one CSC definition (module docstring).

    ``rstats``: :func:`receiver_stats` of the pairs' receptors; the receivers are immune cells, so one
    computation serves every CSC definition.
    """
    n_csc, n_non = int((group == "CSC").sum()), int((group == "nonCSC").sum())
    if n_csc < min_cells or n_non < min_cells:
        d = _note_row(DIFF_COLUMNS, sample, f"fewer than {min_cells} CSC or non-CSC malignant cells")
        d["n_csc"], d["n_noncsc"] = n_csc, n_non
        return d
    if pairs.empty:
        return _note_row(DIFF_COLUMNS, sample, "no ligand-receptor pair with every subunit in the data")
    present = set(a.var_names)
    pairs = pairs[[_subunits(lg) <= present and _subunits(rc) <= present for lg, rc in zip(pairs["ligand"], pairs["receptor"], strict=True)]]  # fmt: skip
    lig = sorted(set(pairs["ligand"]))
    mal = np.isin(group, SENDERS)
    is_csc = group[mal] == "CSC"
    x = sparse.csr_matrix(a.X)
    xm = x[np.flatnonzero(mal)]
    n = xm.shape[0]
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_permutations + 1, 2 * n), dtype=bool)
    for b in range(n_permutations + 1):
        if b == 0:
            lab = is_csc
        else:  # the same draws as np.isin(np.arange(n), rng.choice(...)), without the isin
            lab = np.zeros(n, dtype=bool)
            lab[rng.choice(n, n_csc, replace=False)] = True
        masks[b, :n] = lab
        masks[b, n:] = ~lab
    means_csc = ligand_means(xm, lig, a.var_names, masks[:, :n])
    means_non = ligand_means(xm, lig, a.var_names, masks[:, n:])
    d = means_csc - means_non
    obs, null = d[0], d[1:]
    hi = (1 + (null >= obs - 1e-12).sum(axis=0)) / (n_permutations + 1)
    lo = (1 + (null <= obs + 1e-12).sum(axis=0)) / (n_permutations + 1)
    p_lig = dict(zip(lig, np.minimum(1.0, 2 * np.minimum(hi, lo)), strict=True))
    lstats = {lg: (means_csc[0, i], means_non[0, i]) for i, lg in enumerate(lig)}
    liana = {}
    if liana_table is not None and len(liana_table) and liana_table["ligand"].astype(str).ne("").any():
        wide = liana_table.pivot_table(
            index=["ligand", "receptor", "target"], columns="source", values=["lrscore", "magnitude_rank"],
            aggfunc="first",
        )  # fmt: skip
        for key, row in wide.iterrows():
            liana[key] = {
                "lrscore_diff": row.get(("lrscore", "CSC"), np.nan) - row.get(("lrscore", "nonCSC"), np.nan),
                "magnitude_rank_csc": row.get(("magnitude_rank", "CSC"), np.nan),
                "magnitude_rank_noncsc": row.get(("magnitude_rank", "nonCSC"), np.nan),
            }
    rows = []
    for lg, rc, axis in zip(pairs["ligand"], pairs["receptor"], pairs["axis"], strict=True):
        l_csc, l_non = lstats[lg]
        for r in receivers:
            r_mean, r_frac, p_r = rstats[(rc, r)]
            extra = liana.get((lg, rc, r), {})
            rows.append(
                {
                    "sample": sample,
                    "ligand": lg,
                    "receptor": rc,
                    "target": r,
                    "axis": axis,
                    "n_csc": n_csc,
                    "n_noncsc": n_non,
                    "ligand_csc": l_csc,
                    "ligand_noncsc": l_non,
                    "ligand_diff": l_csc - l_non,
                    "receptor_mean_target": r_mean,
                    "receptor_frac_target": r_frac,
                    "interaction_diff": (l_csc - l_non) * r_mean,
                    "score_csc": (l_csc + r_mean) / 2,
                    "score_noncsc": (l_non + r_mean) / 2,
                    "score_diff": (l_csc - l_non) / 2,
                    "lrscore_diff": extra.get("lrscore_diff", np.nan),
                    "magnitude_rank_csc": extra.get("magnitude_rank_csc", np.nan),
                    "magnitude_rank_noncsc": extra.get("magnitude_rank_noncsc", np.nan),
                    "p_ligand": p_lig[lg],
                    "p_receptor": p_r,
                    "p": max(p_lig[lg], p_r),
                    "n_permutations": n_permutations,
                    "note": "",
                }
            )
    out = pd.DataFrame(rows, columns=[c for c in DIFF_COLUMNS if c not in ("definition", "fdr", "sketch")])
    out["fdr"] = np.nan
    ok = out["p"].notna().to_numpy()
    if ok.any():
        out.loc[ok, "fdr"] = false_discovery_control(out.loc[ok, "p"].to_numpy(dtype=float), method="bh")
    out["definition"], out["sketch"] = "", False
    return (
        out[DIFF_COLUMNS].sort_values(["axis", "ligand", "receptor", "target"], key=_axis_first).reset_index(drop=True)
    )
