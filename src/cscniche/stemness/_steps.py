"""The stemness steps (rules ``cnv``, ``score``, ``project``): AnnData in, tables out, ``obs`` written in place."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .._errors import InputError
from .._params import CnvParams, CscParams, EmbeddingParams, QcParams, ScoringParams
from ..load import _ondisk
from . import _cnv
from . import _score as _sc

log = logging.getLogger(__name__)


def cnv(adata: ad.AnnData, *, sample: str, cnv: CnvParams = CnvParams(), seed: int = 0) -> pd.DataFrame:
    """Malignant cells by inferred copy number, in place (see :func:`cscniche.stemness._cnv.call_malignant`).

    With ``cnv.enabled`` false the malignant set is the malignant compartment (no CNV).

    Returns
    -------
    The one-row malignant-call table (threshold, counts, agreement with the lineage labels).

    Sets
    ----
    ``obs['malignant']``, ``obs['cnv_score']`` (and ``obsm['X_cnv']`` when CNV runs).
    """
    if not cnv.enabled:
        adata.obs["malignant"] = (adata.obs["compartment"] == "malignant").to_numpy()
        adata.obs["cnv_score"] = np.nan
        return pd.DataFrame([{"sample": sample, "rule": "compartment only (cnv.enabled is false)",
                              "n_malignant": int(adata.obs["malignant"].sum())}])  # fmt: skip
    positions = None
    if cnv.gene_positions:
        try:
            positions = _cnv.read_gene_positions(cnv.gene_positions)
        except ValueError as exc:
            raise InputError(str(exc), sample=sample, path=str(cnv.gene_positions)) from None
    try:
        return _cnv.call_malignant(adata, sample=sample, positions=positions, params=cnv, seed=seed)
    except ValueError as exc:
        raise InputError(str(exc).replace(f"sample '{sample}': ", ""), sample=sample) from None


def score(
    adata: ad.AnnData,
    *,
    sample: str,
    scoring: ScoringParams = ScoringParams(),
    csc: CscParams = CscParams(),
    seed: int = 0,
    tumour_type: str | None = None,
) -> pd.DataFrame:
    """Signature scores (every method), potency, stemness index, marker phenotypes and the CSC definitions.

    Parameters
    ----------
    adata
        Log-normalised ``X`` with raw ``layers['counts']``, ``obs['compartment']`` and ``obs['malignant']``.
    sample
        Sample id (tables and messages).
    scoring, csc
        The ``scoring`` and ``csc`` config sections.
    seed
        Seed of the control genes, random sets and pseudobulk methods.
    tumour_type
        The sample's tumour type (sample-sheet column ``tumour_type``): picks the marker panel
        (``scoring.marker_panel`` when empty).

    Returns
    -------
    Signature coverage (one row per gene set: genes present, fraction).

    Sets
    ----
    ``obs['<method>_<set>']`` per method and set (``score_``, ``ucell_``, ``aucell_``, ``pearson_``),
    ``obs['stemness_<method>']``, ``obs['stemness']``, ``obs['potency_*']``, ``obs['*_resid']``,
    ``obs['stemness_pvalue']``, ``obs['csc_fdr']``, ``obs['stemness_z']``, ``obs['pos_<marker>']``, one bool column
    per phenotype of the panel (``obs['CD44+THY1+']``...), ``obs['csc_<definition>']``, ``obs['csc']`` and
    ``obs['group']`` (the first definition), ``obs['expr_<marker>']``, ``obs['detected_<marker>']``;
    ``uns['cscniche']``: ``signature_coverage``, ``stemness_sets``, ``index_genes_removed``, ``csc_definitions``,
    ``calibration``, ``stemness_summary``, ``pseudobulk_scores``.
    """
    from . import _definitions as _df

    definitions = csc.ordered_definitions()
    try:
        panel = _df.read_panel(scoring.marker_panel, scoring.marker_panels, tumour_type=tumour_type)
    except (ValueError, OSError) as exc:
        raise InputError(str(exc), sample=sample, path=str(scoring.marker_panels)) from None
    sets, stemness_sets = _gene_sets(
        scoring.gene_sets, scoring.stemness_sets, panel=panel, covariates=scoring.covariate_sets
    )
    covariates = [c for c in scoring.covariate_sets if c in sets]
    missing_cov = [c for c in scoring.covariate_sets if c not in sets]
    if missing_cov:
        log.warning("sample %s: covariate sets %s are not in the gene-set files; not checked", sample, missing_cov)
    sets, removed = _exclude_covariate_genes(sets, stemness_sets, covariates)
    # targeted panels (CosMx, MERFISH) hold few genes of some sets: those sets are left out (index and covariates
    # alike) with a warning; the marker component and any set the user did not let go stay required
    full = _sc.signature_coverage(adata.var_names, sets)
    low = full.loc[(full["fraction_present"] < scoring.min_fraction_present) | (full["n_present"] == 0), "signature"]
    dropped = [n for n in low if n != _MARKER_SET]
    if dropped:
        log.warning(
            "sample %s: sets below scoring.min_fraction_present (%g) left out of the index and covariates: %s",
            sample, scoring.min_fraction_present, ", ".join(dropped),
        )  # fmt: skip
        sets = {k: v for k, v in sets.items() if k not in dropped}
        stemness_sets = [k for k in stemness_sets if k not in dropped]
        covariates = [c for c in covariates if c not in dropped]
    methods = list(dict.fromkeys([*scoring.methods, scoring.stemness_method]))
    if "calibrated" in definitions and scoring.stemness_method == "mean" and scoring.mean_engine != "fast":
        raise InputError("the calibrated CSC definition with stemness_method 'mean' needs scoring.mean_engine 'fast'")
    weights = None
    if scoring.mrnasi_weights:
        try:
            weights = _sc.read_mrnasi_weights(scoring.mrnasi_weights)
        except (ValueError, OSError) as exc:
            raise InputError(str(exc), sample=sample, path=str(scoring.mrnasi_weights)) from None
    try:
        coverage = _sc.score_signatures(
            adata,
            sets,
            min_fraction=scoring.min_fraction_present,
            ctrl_size=scoring.ctrl_size,
            seed=seed,
            sample=sample,
            methods=methods,
            mean_engine=scoring.mean_engine,
            ucell_max_rank=scoring.ucell_max_rank,
            aucell_n_up=scoring.aucell_n_up,
            pearson_theta=scoring.pearson_theta,
        )
    except ValueError as exc:
        raise InputError(str(exc).replace(f"sample '{sample}': ", ""), sample=sample) from None
    full["scored"] = ~full["signature"].isin(dropped)
    coverage = full
    coverage.insert(0, "sample", sample)
    markers = list(scoring.markers or panel.markers)
    _sc.marker_expression(adata, markers)
    if "malignant" not in adata.obs:
        adata.obs["malignant"] = (adata.obs["compartment"] == "malignant").to_numpy()
    indices = []
    w = _sc.index_weights(adata.var_names, sets, stemness_sets, scoring.index_weighting)
    for m in methods:
        adata.obs[f"stemness_{m}"] = _sc.stemness_index(adata, stemness_sets, prefix=_sc.METHODS[m], weights=w)
        indices.append(f"stemness_{m}")
    adata.obs["stemness"] = adata.obs[f"stemness_{scoring.stemness_method}"]
    try:
        pot = _sc.potency(adata, weights=weights)
    except ValueError as exc:
        raise InputError(str(exc), sample=sample, path=str(scoring.mrnasi_weights)) from None
    score_cols = [f"{_sc.METHODS[m]}_{s}" for m in methods for s in sets]
    _sc.add_residuals(adata, score_cols + indices + ["stemness"] + pot[1:])
    adata.obs = adata.obs.copy()  # one block again after the column-by-column inserts
    _sc.calibrate_stemness(
        adata, sets, stemness_sets, method=scoring.stemness_method, n_random=csc.n_random_sets, seed=seed,
        ucell_max_rank=scoring.ucell_max_rank, pearson_theta=scoring.pearson_theta, weights=w, alpha=csc.alpha,
    )  # fmt: skip
    _df.add_phenotypes(adata, panel)
    phenotype = csc.phenotype or panel.default_phenotype
    try:
        counts = _df.call_definitions(adata, definitions, alpha=csc.alpha, quantile=csc.quantile, phenotype=phenotype)
    except ValueError as exc:
        raise InputError(str(exc), sample=sample) from None
    info = adata.uns.setdefault("cscniche", {})
    info["signature_coverage"] = coverage
    info["stemness_sets"] = stemness_sets
    info["covariate_sets"] = covariates
    info["index_genes_removed"] = removed
    info["sets_dropped"] = dropped
    info["stemness_summary"] = _sc.stemness_summary(
        adata, sample=sample, markers=markers, indices=indices + pot, covariates=covariates,
        prefix=_sc.METHODS[scoring.stemness_method],
    )  # fmt: skip
    info["pseudobulk_scores"] = _sc.pseudobulk_scores(
        adata, sets, sample=sample, methods=scoring.pseudobulk_methods, seed=seed
    )
    log.info(
        "sample %s: CSC per definition %s among %d malignant cells (panel %s, phenotype %s)",
        sample, counts, int(adata.obs["malignant"].sum()), panel.name, phenotype,
    )  # fmt: skip
    return coverage


def _exclude_covariate_genes(sets, stemness_sets, covariates):
    """The index sets without the genes of the covariate sets (immediate-early, cycle): those programs are
    scored and checked, never part of the index. Returns the sets and {set: removed genes}."""
    cov = {g for c in covariates for g in sets[c]}
    out, removed = dict(sets), {}
    for s in stemness_sets:
        drop = [g for g in sets[s] if g in cov]
        if drop and s != _MARKER_SET:  # the named markers stay, whatever list they are also on
            out[s] = [g for g in sets[s] if g not in cov]
            removed[s] = drop
    if removed:
        log.info("genes of the covariate sets removed from the index sets: %s", removed)
    return out, removed


_MARKER_SET = "CSC_MARKERS"


def _gene_sets(gene_sets, stemness_sets, *, panel=None, covariates=()) -> tuple[dict[str, list[str]], list[str]]:
    """The signatures of the GMT files (a name defined twice is an error) and the checked stemness sets.

    ``CSC_MARKERS``, when no GMT defines it, is the marker panel's positively gated markers (``panel``).
    Empty ``stemness_sets``: ``CSC_MARKERS`` and every other set of the files except the ``covariates`` and
    the panel-specific marker sets ``CSC_MARKERS_*`` (the default GMT: CSC_MARKERS, WNT_TARGETS, NOTCH_TARGETS,
    IL6_STAT3_TUMOUR, CANCERSEA_STEMNESS)."""
    sets: dict[str, list[str]] = {}
    for path in gene_sets or ScoringParams().gene_sets:
        for name, genes in _sc.read_gmt(path).items():
            if name in sets:
                raise InputError(f"gene set '{name}' is defined in more than one GMT file", path=str(path))
            sets[name] = genes
    if _MARKER_SET not in sets and panel is not None:
        sets = {_MARKER_SET: list(panel.index_markers), **sets}
    if not stemness_sets:
        stemness_sets = [
            n for n in sets if n == _MARKER_SET or (n not in covariates and not n.startswith(f"{_MARKER_SET}_"))
        ]
    stemness_sets = list(stemness_sets)
    unknown = [s for s in stemness_sets if s not in sets]
    if unknown:
        raise InputError(f"stemness_sets {unknown} are not in the gene-set files; known: {sorted(sets)}")
    return sets, stemness_sets


def project(
    qc_path: str | Path,
    sketch: ad.AnnData,
    *,
    sample: str,
    scoring: ScoringParams = ScoringParams(),
    csc: CscParams = CscParams(),
    embedding: EmbeddingParams = EmbeddingParams(),
    qc: QcParams = QcParams(),
    seed: int = 0,
) -> pd.DataFrame:
    """Every QC-passed cell of ``qc_path`` labelled, scored and called with the analysed ``sketch``'s fits.

    See :mod:`cscniche.stemness._project`. Uses the ``scoring`` and ``csc`` sections as :func:`score` does,
    ``embedding.n_neighbors`` (labels from the sketch's neighbours) and ``qc.target_sum``.

    Returns
    -------
    One row per QC-passed cell (``cell_id``, ``sample``, labels, scores, ``csc``, ``in_sketch``).
    """
    from . import _definitions as _df
    from . import _project as _proj

    info = sketch.uns.get("cscniche", {})
    panel = _df.read_panel(info.get("marker_panel", scoring.marker_panel), scoring.marker_panels)
    sets, stemness_sets = _gene_sets(
        scoring.gene_sets, scoring.stemness_sets, panel=panel, covariates=scoring.covariate_sets
    )
    sets, _ = _exclude_covariate_genes(sets, stemness_sets, [c for c in scoring.covariate_sets if c in sets])
    dropped = set(info.get("sets_dropped", []))
    sets = {k: v for k, v in sets.items() if k not in dropped}
    stemness_sets = list(info.get("stemness_sets", [k for k in stemness_sets if k not in dropped]))
    model = _proj.SketchModel(
        sketch, sets, stemness_sets, methods=list(scoring.methods), stemness_method=scoring.stemness_method,
        index_weighting=scoring.index_weighting, pearson_theta=scoring.pearson_theta,
        ucell_max_rank=scoring.ucell_max_rank, aucell_n_up=scoring.aucell_n_up, n_neighbors=embedding.n_neighbors,
        definitions=info.get("csc_definitions", csc.ordered_definitions()), n_random_sets=csc.n_random_sets,
        seed=seed, fit_null=sketch.n_obs < _ondisk.shape(qc_path)[0],  # no sketch: every cell keeps its own p
    )  # fmt: skip
    table = _proj.project_cells(
        qc_path, sketch, model, target_sum=qc.target_sum, alpha=csc.alpha, markers=scoring.markers or panel.markers
    )
    table.insert(1, "sample", sample)
    n_out = int((~table["in_sketch"]).sum())
    log.info("sample %s: %d cells (%d outside the sketch), %d CSC", sample, len(table), n_out, int(table["csc"].sum()))
    return table
