"""Per-cell stemness scores, marker expression and the CSC call."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._params import CSC_MARKERS
from .._resources import resolve
from .kernels import _methods as _m
from .kernels import pearson as _pr

log = logging.getLogger(__name__)


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file: ``name<TAB>description<TAB>gene...`` per line; genes de-duplicated in order."""
    sets: dict[str, list[str]] = {}
    path = resolve(path)
    for n, line in enumerate(path.read_text().splitlines(), 1):
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


def _present_indices(var_names, gene_sets: dict[str, list[str]]) -> dict[str, np.ndarray]:
    present = pd.Index(var_names)
    return {n: present.get_indexer([g for g in genes if g in present]) for n, genes in gene_sets.items()}


def _score_mean(adata, names, sets, *, gene_sets, ctrl_size, seed, mean_engine, **_) -> np.ndarray:
    """``mean``: scanpy ``score_genes`` (``mean_engine='scanpy'``) or its exact sparse equivalent (``'fast'``)."""
    if mean_engine == "scanpy":
        import scanpy as sc

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
        return adata.obs[[f"score_{n}" for n in names]].to_numpy()
    if mean_engine != "fast":
        raise ValueError(f"scoring.mean_engine must be 'fast' or 'scanpy', not {mean_engine!r}")
    means = _m.gene_means(adata.X)
    ctrl = []
    for s in sets:
        c = _m.control_genes(means, s, ctrl_size=min(ctrl_size, max(1, adata.n_vars - len(s))), seed=seed)
        if len(c) == 0:
            raise ValueError("no control genes found for a signature: the data have too few genes")
        ctrl.append(c)
    m = _m.set_means(adata.X, sets + ctrl)
    adata.uns.setdefault("cscniche", {})["control_genes"] = {
        n: adata.var_names[c].tolist() for n, c in zip(names, ctrl, strict=True)
    }
    return np.column_stack([m[:, j] - m[:, len(sets) + j] for j in range(len(sets))])


def _score_ucell(adata, names, sets, *, ucell_max_rank, **_) -> np.ndarray:
    """``ucell``: the UCell kernel (:func:`cscniche.stemness.kernels._methods.ucell`)."""
    return _m.ucell(adata.X, sets, max_rank=min(ucell_max_rank, adata.n_vars))


def _score_aucell(adata, names, sets, *, aucell_n_up, **_) -> np.ndarray:
    """``aucell``: the AUCell kernel (:func:`cscniche.stemness.kernels._methods.aucell`)."""
    return _m.aucell(adata.X, sets, n_up=aucell_n_up)


def _score_pearson(adata, names, sets, *, pearson_theta, **_) -> np.ndarray:
    """``pearson``: mean analytic Pearson residual of the set's genes (:mod:`cscniche.stemness.kernels.pearson`)."""
    return _pr.set_means(adata.layers["counts"], sets, pearson_model(adata, theta=pearson_theta))


#: scoring method -> its scorer ``(adata, names, sets, **options) -> cells x sets``, run in this order
SCORERS = {"mean": _score_mean, "ucell": _score_ucell, "aucell": _score_aucell, "pearson": _score_pearson}


def score_signatures(
    adata: ad.AnnData,
    gene_sets: dict[str, list[str]],
    *,
    min_fraction: float = 0.5,
    ctrl_size: int = 50,
    seed: int = 0,
    sample: str | None = None,
    methods: tuple[str, ...] | list[str] = ("mean",),
    mean_engine: str = "fast",
    ucell_max_rank: int = 1500,
    aucell_n_up: int | None = None,
    pearson_theta: float = 100.0,
) -> pd.DataFrame:
    """Score every cell for every gene set on log-normalised ``X`` with each of ``methods``.

    * ``mean``: ``obs['score_<set>']``, scanpy ``score_genes`` (``mean_engine='scanpy'``) or its exact sparse
      equivalent :func:`cscniche.stemness.kernels._methods.score_genes` (``'fast'``, the default; same control genes, same seed);
    * ``ucell``: ``obs['ucell_<set>']`` (:func:`cscniche.stemness.kernels._methods.ucell`, max rank ``ucell_max_rank``);
    * ``aucell``: ``obs['aucell_<set>']`` (:func:`cscniche.stemness.kernels._methods.aucell`, top ``aucell_n_up`` genes);
    * ``pearson``: ``obs['pearson_<set>']``, the mean analytic Pearson residual of the set's genes computed from
      ``layers['counts']`` (:mod:`cscniche.stemness.kernels.pearson`, overdispersion ``pearson_theta``, scanpy's clip).

    Returns the coverage table (see :func:`signature_coverage`). Missing genes are warned about with the list
    and fraction present; a set below ``min_fraction`` stops the run with a ValueError.
    """
    coverage = signature_coverage(adata.var_names, gene_sets)
    check_coverage(coverage, min_fraction=min_fraction, sample=sample)
    idx = _present_indices(adata.var_names, gene_sets)
    names = list(idx)
    sets = [idx[n] for n in names]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown scoring methods {sorted(unknown)}; known: {list(METHODS)}")
    options = {
        "gene_sets": gene_sets,
        "ctrl_size": ctrl_size,
        "seed": seed,
        "mean_engine": mean_engine,
        "ucell_max_rank": ucell_max_rank,
        "aucell_n_up": aucell_n_up,
        "pearson_theta": pearson_theta,
    }
    for method, scorer in SCORERS.items():  # the registry's order, whatever the order of ``methods``
        if method in methods:
            scores = scorer(adata, names, sets, **options)
            for j, n in enumerate(names):
                adata.obs[f"{METHODS[method]}_{n}"] = scores[:, j]
    return coverage


def pearson_model(adata: ad.AnnData, *, theta: float = 100.0) -> _pr.PearsonModel:
    """The residuals' null model, fitted on ``layers['counts']`` of all cells of the sample."""
    if "counts" not in adata.layers:
        raise ValueError("the pearson method needs raw counts in layers['counts']")
    return _pr.fit(adata.layers["counts"], theta=theta)


#: per-cell scoring methods and the prefix of their obs columns
METHODS = {"mean": "score", "ucell": "ucell", "aucell": "aucell", "pearson": "pearson"}


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


def index_weights(var_names, gene_sets: dict[str, list[str]], signatures: list[str], scheme: str = "sqrt_size"):
    """Weights of the sets in the stemness index: ``sqrt_size`` (square root of the genes present: Stouffer's
    weighting, each gene counts alike, so a 4-gene set does not carry the weight of an 87-gene one) or
    ``equal``. Normalised to sum to 1."""
    if scheme == "equal":
        w = np.ones(len(signatures))
    elif scheme == "sqrt_size":
        present = set(map(str, var_names))
        w = np.sqrt([sum(g in present for g in gene_sets[s]) for s in signatures]).astype(np.float64)
    else:
        raise ValueError(f"index weighting must be 'sqrt_size' or 'equal', not {scheme!r}")
    if not w.sum() > 0:
        raise ValueError("no gene of the stemness sets is in the data")
    return w / w.sum()


def stemness_index(
    adata: ad.AnnData,
    signatures: list[str],
    *,
    reference: np.ndarray | None = None,
    prefix: str = "score",
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted mean (``weights``, default equal; see :func:`index_weights`) of the standardised
    ``<prefix>_<set>`` columns (prefix ``score`` for mean-based scores).

    Each score is centred and scaled by its mean and standard deviation over the ``reference``
    cells (boolean mask; by default the malignant cells when there are at least 10, else all cells),
    so the index measures stem-like character relative to the tumour cells of the sample.
    """
    if reference is None:
        if "malignant" in adata.obs:
            mal = adata.obs["malignant"].to_numpy(dtype=bool)
        else:
            mal = (adata.obs["compartment"] == "malignant").to_numpy() if "compartment" in adata.obs else None
        reference = mal if mal is not None and mal.sum() >= 10 else np.ones(adata.n_obs, dtype=bool)
    cols = [f"{prefix}_{s}" for s in signatures]
    m = adata.obs[cols].to_numpy(dtype=np.float64)
    mu = m[reference].mean(axis=0)
    sd = m[reference].std(axis=0)
    sd[~(sd > 0)] = 1.0
    w = np.full(len(cols), 1.0 / len(cols)) if weights is None else np.asarray(weights, dtype=np.float64)
    return ((m - mu) / sd) @ (w / w.sum())


def call_csc(
    adata: ad.AnnData, *, quantile: float = 0.9, key: str = "stemness", rule: str = "quantile", alpha: float = 0.1
) -> int:
    """Call CSC (``obs['csc']``) among malignant cells.

    ``rule='fdr'``: ``obs['csc_fdr'] <= alpha`` (see :func:`calibrate_stemness`); ``rule='quantile'``: stemness
    at or above the ``quantile`` of the malignant cells. The malignant cells are ``obs['malignant']`` (bool)
    when present, else the cells of the malignant compartment (and ``obs['malignant']`` is written).
    Non-malignant cells are never CSC. ``obs['group']`` becomes CSC, nonCSC (malignant) or the cell type.
    Returns the number of CSC; 0 with a warning when the sample has no malignant cell.
    """
    if "malignant" not in adata.obs:
        adata.obs["malignant"] = (adata.obs["compartment"] == "malignant").to_numpy()
    mal = adata.obs["malignant"].to_numpy(dtype=bool)
    csc = np.zeros(adata.n_obs, dtype=bool)
    info = adata.uns.setdefault("cscniche", {})
    if mal.sum() == 0:
        log.warning("no malignant cells: no CSC can be called")
    elif rule == "fdr":
        fdr = adata.obs["csc_fdr"].to_numpy(dtype=np.float64)
        csc = mal & (np.nan_to_num(fdr, nan=1.0) <= alpha)
        info["csc_rule"] = f"malignant and BH-FDR of the {key} empirical p-value <= {alpha:g}"
    elif rule == "quantile":
        thr = np.quantile(adata.obs[key].to_numpy()[mal], quantile)
        csc = mal & (adata.obs[key].to_numpy() >= thr)
        info["csc_threshold"] = float(thr)
        info["csc_rule"] = f"malignant and {key} >= quantile {quantile:g} of malignant cells"
    else:
        raise ValueError(f"csc.rule must be 'fdr' or 'quantile', not {rule!r}")
    adata.obs["csc"] = csc
    group = np.where(csc, "CSC", np.where(mal, "nonCSC", adata.obs["cell_type"].astype(str)))
    adata.obs["group"] = group
    return int(csc.sum())


def calibrate_stemness(
    adata: ad.AnnData,
    gene_sets: dict[str, list[str]],
    stemness_sets: list[str],
    *,
    method: str = "mean",
    n_random: int = 1000,
    n_bins: int = 25,
    ucell_max_rank: int = 1500,
    pearson_theta: float = 100.0,
    weighting: str = "equal",
    weights: np.ndarray | None = None,
    seed: int = 0,
    alpha: float = 0.1,
) -> dict:
    """``obs['stemness_pvalue']``, ``obs['csc_fdr']`` (BH over the malignant cells) and ``obs['stemness_z']``
    (the cell's normalised score) from the pooled random-set null.

    The combined index of ``method`` (mean: ``score_<set>``, ucell: ``ucell_<set>``, pearson:
    ``pearson_<set>``) is computed for the signature and for ``n_random`` draws of random gene sets matched to
    the signature genes by expression bin (:func:`cscniche.stemness.kernels._methods.random_set_pvalues`); the
    sets are weighted by ``weights`` (those of the index), else by ``weighting`` as in :func:`index_weights`.
    The p-value is then scDRS's (Zhang et al., Nat Genet 2022): each cell's index normalised by its own control
    indices, compared with the *pooled* normalised control indices of all malignant cells (the background,
    chosen on purpose: the null describes the tumour cells), so p can reach ``1 / (n_malignant * n_random + 1)``
    instead of ``1 / (n_random + 1)`` (:func:`cscniche.stemness.pooled_null.pooled_null`). Non-malignant cells
    get NaN.

    Returns the calibration summary (``min_pvalue``, ``bh_floor``, ``min_qvalue``, ``n_called`` at ``alpha``,
    and the sample-level subpopulation test ``subpop_*``, :func:`cscniche.stemness.pooled_null.subpopulation_test`),
    also kept in ``uns['cscniche']['calibration']``; empty with fewer than 3 malignant cells.
    """
    from . import pooled_null as _pn

    mal = adata.obs["malignant"].to_numpy(dtype=bool)
    p = np.full(adata.n_obs, np.nan)
    q = np.full(adata.n_obs, np.nan)
    z = np.full(adata.n_obs, np.nan)
    summary: dict = {}
    if mal.sum() >= 3:
        idx = _present_indices(adata.var_names, {k: gene_sets[k] for k in stemness_sets})
        sets = [idx[k] for k in stemness_sets]
        prefix = METHODS[method]
        observed = adata.obs.loc[mal, [f"{prefix}_{k}" for k in stemness_sets]].to_numpy(dtype=np.float64)
        bins = _m.expression_bins(_m.gene_means(adata.X), n_bins)
        offsets = T = means = None
        if method == "mean":
            ctrl = adata.uns.get("cscniche", {}).get("control_genes")
            if ctrl is None:
                raise ValueError("p-values of the mean-based index need the control genes of the fast engine")
            T = adata.X[mal]
            offsets = _m.set_means(T, [adata.var_names.get_indexer(ctrl[k]) for k in stemness_sets])
        elif method == "ucell":
            T = _m.ucell_transform(adata.X[mal], max_rank=min(ucell_max_rank, adata.n_vars))
        elif method == "pearson":
            model = pearson_model(adata, theta=pearson_theta)
            counts, rows = adata.layers["counts"], np.flatnonzero(mal)
            excess = _pr.nonzero_excess(counts, model, rows)

            def means(cols):
                return _pr.set_means(counts, cols, model, rows=rows, excess=excess)

        else:
            raise ValueError(f"empirical p-values are implemented for 'mean', 'ucell' and 'pearson', not {method!r}")
        _, obs_index, ctrl_index = _m.random_set_pvalues(
            T, sets, observed, bins, n_random=n_random, offsets=offsets, seed=seed, means=means,
            weights=index_weights(adata.var_names, gene_sets, stemness_sets, weighting) if weights is None else weights,
            return_indices=True,
        )  # fmt: skip
        res = _pn.pooled_null(obs_index, ctrl_index, alpha=alpha)
        p[mal], q[mal], z[mal] = res.pvalue, res.qvalue, res.norm_score
        summary = {**res.summary(), **_pn.subpopulation_test(obs_index, ctrl_index)}
    adata.obs["stemness_pvalue"] = p
    adata.obs["csc_fdr"] = q
    adata.obs["stemness_z"] = z
    adata.uns.setdefault("cscniche", {})["calibration"] = summary
    return summary


def potency(adata: ad.AnnData, *, weights: pd.Series | None = None, n_top: int = 200) -> list[str]:
    """Potency columns: ``potency_genes`` (detected genes, rank-scaled), ``potency_gcs`` (CytoTRACE-style gene
    counts signature, :func:`cscniche.stemness.kernels._methods.gene_count_signature`) and, with ``weights`` (symbol -> weight,
    Malta et al. 2018), ``mrnasi`` (Spearman correlation with the weights over the shared genes, min-max
    scaled within the sample) and ``mrnasi_rho`` (the raw correlation). Returns the columns written."""
    counts = adata.layers["counts"] if "counts" in adata.layers else adata.X
    n_det = _m.detected_genes(counts)
    adata.obs["n_detected"] = n_det
    adata.obs["potency_genes"] = _m._rank01(n_det)
    gcs, _ = _m.gene_count_signature(adata.X, n_det, n_top=n_top)
    adata.obs["potency_gcs"] = gcs
    cols = ["potency_genes", "potency_gcs"]
    if weights is not None:
        shared = [g for g in adata.var_names if g in weights.index]
        if len(shared) < 100:
            raise ValueError(f"only {len(shared)} genes of the data have an mRNAsi weight (need 100)")
        rho = _m.spearman_with_weights(adata[:, shared].X, weights.loc[shared].to_numpy())
        adata.obs["mrnasi_rho"] = rho
        adata.obs["mrnasi"] = _m.minmax(rho)
        adata.uns.setdefault("cscniche", {})["mrnasi_genes"] = len(shared)
        cols += ["mrnasi"]
    return cols


def read_mrnasi_weights(path: str | Path) -> pd.Series:
    """The mRNAsi gene weights: two tab-separated columns, symbol and weight (no header; a header is skipped)."""
    path = resolve(path)
    df = pd.read_csv(path, sep="\t", header=None, names=["symbol", "weight"], comment="#")
    df = df[pd.to_numeric(df["weight"], errors="coerce").notna()]
    if df.empty:
        raise ValueError(f"mRNAsi weight file '{path}' has no 'symbol<TAB>weight' rows")
    return df.drop_duplicates("symbol").set_index("symbol")["weight"].astype(np.float64)


def add_residuals(adata: ad.AnnData, columns: list[str]) -> list[str]:
    """``obs['<col>_resid']``: each score adjusted for log detected genes (fit on the malignant cells when there
    are at least 10, else all cells; :func:`cscniche.stemness.kernels._methods.residualise`)."""
    mal = adata.obs["malignant"].to_numpy(dtype=bool) if "malignant" in adata.obs else np.ones(adata.n_obs, bool)
    fit = mal if mal.sum() >= 10 else None
    out = []
    for c in columns:
        adata.obs[f"{c}_resid"] = _m.residualise(adata.obs[c].to_numpy(), adata.obs["n_detected"].to_numpy(), fit=fit)
        out.append(f"{c}_resid")
    return out


def stemness_summary(
    adata: ad.AnnData,
    *,
    sample: str,
    markers=CSC_MARKERS,
    indices: list[str] = (),
    covariates: list[str] = (),
    prefix: str = "pearson",
    max_covariate_rho: float = 0.5,
) -> pd.DataFrame:
    """One row: n malignant, n CSC (primary definition and each of ``uns['cscniche']['csc_definitions']``),
    the pooled null's resolution (``min_pvalue``, ``bh_floor``, ``min_qvalue``) and the sample-level
    subpopulation test (``subpop_pvalue``...), phenotype counts among malignant cells (``n_<phenotype>``),
    marker detection (count > 0) among CSC vs the other malignant cells for the primary call
    (``detected_<g>_csc``/``_noncsc``) and each definition (``detected_<g>_csc_<def>``/``_rest_<def>``), and the
    covariate check: ``covariate_rho_<set>``, the Spearman correlation of stemness with each covariate set's
    score (``<prefix>_<set>``) over the malignant cells, and ``covariate_check`` (``ok`` or the sets with
    |rho| > ``max_covariate_rho``, with a warning).

    ``spearman_<a>__<b>`` is the Spearman correlation of two stemness indices over the malignant cells.
    """
    from scipy.stats import spearmanr

    obs = adata.obs
    mal = obs["malignant"].to_numpy(dtype=bool)
    csc = obs["csc"].to_numpy(dtype=bool)
    info = adata.uns.get("cscniche", {})
    row = {
        "sample": sample,
        "n_cells": adata.n_obs,
        "n_malignant": int(mal.sum()),
        "n_csc": int(csc.sum()),
        "csc_fraction": float(csc.sum() / mal.sum()) if mal.sum() else np.nan,
        "csc_rule": info.get("csc_rule", ""),
        "marker_panel": info.get("marker_panel", ""),
        "csc_phenotype": info.get("csc_phenotype", ""),
    }
    definitions = list(info.get("csc_definitions", []))
    for d in definitions:
        row[f"n_csc_{d}"] = int(obs[f"csc_{d}"].to_numpy(dtype=bool).sum())
    cal = dict(info.get("calibration", {}))
    for k in ("min_pvalue", "bh_floor", "min_cells_callable", "min_qvalue", "n_background", "n_ctrl"):
        row[k] = cal.get(k, np.nan)
    for k in ("subpop_pvalue", "subpop_z", "subpop_observed", "subpop_null_mean"):
        row[k] = cal.get(k, np.nan)
    for ph in info.get("phenotypes", []):
        if ph in obs:
            v = pd.array(obs[ph], dtype="boolean")
            # a phenotype gated on a gene the data lack (e.g. PROM1 on a CosMx panel) is not measurable: NaN, not 0
            gone = v.isna().all() or ph in set(np.atleast_1d(info.get("phenotypes_unmeasurable", [])))
            row[f"n_{ph}"] = np.nan if gone else int((v.fillna(False).to_numpy(dtype=bool) & mal).sum())
    for g in markers:
        col = f"detected_{g}"
        for name, m in (("csc", csc), ("noncsc", mal & ~csc)):
            row[f"{col}_{name}"] = float(obs[col].to_numpy()[m].mean()) if col in obs and m.any() else np.nan
        for d in definitions:
            c = obs[f"csc_{d}"].to_numpy(dtype=bool)
            for name, m in ((f"csc_{d}", c), (f"rest_{d}", mal & ~c)):
                row[f"{col}_{name}"] = float(obs[col].to_numpy()[m].mean()) if col in obs and m.any() else np.nan
    flagged = []
    for c in covariates:
        col = f"{prefix}_{c}"
        rho = np.nan
        if col in obs and mal.sum() > 2:
            x, y = obs["stemness"].to_numpy()[mal], obs[col].to_numpy()[mal]
            ok = np.isfinite(x) & np.isfinite(y)
            rho = float(spearmanr(x[ok], y[ok])[0]) if ok.sum() > 2 else np.nan
        row[f"covariate_rho_{c}"] = rho
        if np.isfinite(rho) and abs(rho) > max_covariate_rho:
            flagged.append(f"{c} (rho {rho:.2f})")
    if covariates:
        row["covariate_check"] = "ok" if not flagged else "stemness follows " + ", ".join(flagged)
        if flagged:
            log.warning("sample %s: the stemness index follows covariate programs: %s", sample, ", ".join(flagged))
    indices = [c for c in indices if c in obs]
    for i, a in enumerate(indices):
        for b in indices[i + 1 :]:
            x, y = obs[a].to_numpy()[mal], obs[b].to_numpy()[mal]
            ok = np.isfinite(x) & np.isfinite(y)
            rho = spearmanr(x[ok], y[ok])[0] if ok.sum() > 2 else np.nan
            row[f"spearman_{a}__{b}"] = float(rho)
    row["index_sets"] = ",".join(info.get("stemness_sets", []))
    row["sets_dropped"] = ",".join(info.get("sets_dropped", []))
    cnv = info.get("cnv")
    if isinstance(cnv, pd.DataFrame) and "candidate_warning" in cnv and len(cnv):
        row["candidate_warning"] = str(cnv["candidate_warning"].iloc[0])
    if isinstance(cnv, pd.DataFrame) and "cnv_warning" in cnv and len(cnv) and pd.notna(cnv["cnv_warning"].iloc[0]):
        row["cnv_warning"] = str(cnv["cnv_warning"].iloc[0])
    return pd.DataFrame([row])


def pseudobulk_scores(
    adata: ad.AnnData,
    gene_sets: dict[str, list[str]],
    *,
    sample: str,
    methods: tuple[str, ...] | list[str] = ("ssgsea",),
    groupby: str = "group",
    min_cells: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """gseapy ssGSEA / GSVA on pseudobulk profiles (mean log-normalised expression per sample x group).

    Groups with fewer than ``min_cells`` cells are left out. ``min_size`` is set to 1 so a 4-gene marker set
    is kept (gseapy's default of 15 would drop it). Long table: sample, group, n_cells, method, signature, score
    (ssGSEA normalised enrichment score NES; GSVA enrichment score ES).
    """
    import gseapy

    cols = ["sample", "group", "n_cells", "method", "signature", "score"]
    labels = adata.obs[groupby].astype(str).to_numpy()
    groups, counts = np.unique(labels, return_counts=True)
    groups = groups[counts >= min_cells]
    if len(groups) == 0 or not methods:
        return pd.DataFrame(columns=cols)
    ind = sparse.csr_matrix(
        (np.ones(adata.n_obs), (np.searchsorted(groups, labels).clip(0, len(groups) - 1), np.arange(adata.n_obs))),
        shape=(len(groups), adata.n_obs),
    )
    keep = np.isin(labels, groups)
    ind = ind[:, keep]
    X = adata.X[keep]
    n = np.asarray(ind.sum(axis=1)).ravel()
    pb = np.asarray((ind @ X).todense() if sparse.issparse(X) else ind @ X) / n[:, None]
    df = pd.DataFrame(pb.T, index=adata.var_names, columns=groups)
    df = df[df.sum(axis=1) > 0]
    present = set(df.index)
    sets = {k: [g for g in v if g in present] for k, v in gene_sets.items()}
    sets = {k: v for k, v in sets.items() if v}
    rows = []
    for method in methods:
        if method == "ssgsea":
            res = gseapy.ssgsea(
                data=df, gene_sets=sets, min_size=1, max_size=100000, outdir=None, no_plot=True, seed=seed, threads=1
            ).res2d
            val = "NES"
        elif method == "gsva":
            if df.shape[1] < 2:
                continue
            res = gseapy.gsva(
                data=df, gene_sets=sets, min_size=1, max_size=100000, outdir=None, seed=seed, threads=1
            ).res2d
            val = "ES"
        else:
            raise ValueError(f"unknown pseudobulk method {method!r}; known: ssgsea, gsva")
        for r in res.itertuples(index=False):
            g = str(r.Name)
            rows.append([sample, g, int(n[list(groups).index(g)]), method, str(r.Term), float(getattr(r, val))])
    return pd.DataFrame(rows, columns=cols)
