"""One function per workflow step, each taking and returning AnnData/tables (no file paths but inputs).

The Snakemake scripts in ``workflow/scripts`` call exactly one of these; they can equally be used
from Python::

    import cscniche as cn
    adata = cn.io.load_sample("tumour.h5ad", sample="s1", cell_type_key="celltype")
    adata, qc = cn.stages.qc(adata, sample="s1")
    cn.stages.embed(adata)
    cn.stages.annotate(adata, cell_type_key="celltype")
    cn.stages.score(adata, sample="s1")
    knn_table = cn.stages.neighbours(adata, sample="s1")
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from . import annotate as _ann
from . import checkpoints as _cp
from . import cnv as _cnv
from . import cohort as _cohort
from . import crosstalk as _ct
from . import neighbours as _nb
from . import preprocess as _pp
from . import scoring as _sc
from ._errors import InputError

log = logging.getLogger(__name__)


def qc(adata: ad.AnnData, *, sample: str, target_sum: float = 1e4, **thresholds) -> tuple[ad.AnnData, pd.DataFrame]:
    """QC-filter and log-normalise; returns the filtered AnnData and the one-row QC table."""
    adata, table = _pp.qc_filter(adata, sample=sample, **thresholds)
    _pp.normalise(adata, target_sum=target_sum)
    return adata, table


def qc_file(src: str | Path, dst: str | Path, *, sample: str, target_sum: float = 1e4, **thresholds) -> pd.DataFrame:
    """QC-filter the raw counts of ``src`` into ``dst``, streamed (:func:`cscniche.preprocess.qc_filter_file`).

    ``dst`` keeps raw counts only; the embedding step normalises (``target_sum``: see :func:`embed_sample`).
    """
    return _pp.qc_filter_file(src, dst, sample=sample, **thresholds)


def embed_sample(
    path: str | Path,
    *,
    sample: str,
    target_sum: float = 1e4,
    max_cells: int | None = None,
    seed: int = 0,
    **params,
) -> ad.AnnData:
    """Read the QC-passed counts (a uniform sketch of ``max_cells`` when there are more), normalise and :func:`embed`."""
    adata = _pp.read_for_analysis(path, sample=sample, max_cells=max_cells, target_sum=target_sum, seed=seed)
    embed(adata, seed=seed, **params)
    return adata


def embed(adata: ad.AnnData, *, seed: int = 0, **params) -> None:
    """PCA, kNN graph, Leiden clusters and UMAP in place (see :func:`cscniche.preprocess.embed_and_cluster`)."""
    _pp.embed_and_cluster(adata, seed=seed, **params)


def annotate(
    adata: ad.AnnData,
    *,
    cell_type_key: str | None = None,
    markers: str | Path = "config/markers.tsv",
    compartments: str | Path = "config/compartments.tsv",
) -> None:
    """Cell types and compartments in place (author labels when ``cell_type_key``, else markers)."""
    try:
        _ann.assign_cell_types(
            adata,
            cell_type_key=cell_type_key or None,
            markers=_ann.read_markers(markers),
            rules=_ann.read_compartment_rules(compartments),
        )
    except ValueError as exc:
        raise InputError(
            f"cell typing failed: {exc}; name author labels in the sample-sheet column cell_type_key or fix the "
            f"marker table '{markers}' (config annotation.markers)"
        ) from None


def cnv(
    adata: ad.AnnData,
    *,
    sample: str,
    enabled: bool = True,
    gene_positions: str | Path | None = None,
    seed: int = 0,
    **params,
) -> pd.DataFrame:
    """Malignant cells by inferred copy number, in place (see :func:`cscniche.cnv.call_malignant`).

    With ``enabled=False`` the malignant set is the malignant compartment (no CNV), as before.
    Returns the one-row malignant-call table (threshold, counts, agreement with the lineage labels).
    """
    if not enabled:
        adata.obs["malignant"] = (adata.obs["compartment"] == "malignant").to_numpy()
        adata.obs["cnv_score"] = np.nan
        return pd.DataFrame([{"sample": sample, "rule": "compartment only (cnv.enabled is false)",
                              "n_malignant": int(adata.obs["malignant"].sum())}])  # fmt: skip
    positions = None
    if gene_positions:
        try:
            positions = _cnv.read_gene_positions(gene_positions)
        except ValueError as exc:
            raise InputError(str(exc), sample=sample, path=str(gene_positions)) from None
    try:
        return _cnv.call_malignant(adata, sample=sample, positions=positions, seed=seed, **params)
    except ValueError as exc:
        raise InputError(str(exc).replace(f"sample '{sample}': ", ""), sample=sample) from None


def score(
    adata: ad.AnnData,
    *,
    sample: str,
    gene_sets: list[str | Path] | None = None,
    stemness_sets: list[str] | None = None,
    min_fraction_present: float = 0.25,
    ctrl_size: int = 50,
    markers: list[str] | tuple[str, ...] = _sc.CSC_MARKERS,
    quantile: float = 0.9,
    seed: int = 0,
    methods: list[str] | tuple[str, ...] = ("mean", "ucell", "aucell"),
    mean_engine: str = "fast",
    ucell_max_rank: int = 1500,
    aucell_n_up: int | None = None,
    stemness_method: str = "pearson",
    index_weighting: str = "sqrt_size",
    pearson_theta: float = 100.0,
    mrnasi_weights: str | Path | None = None,
    pseudobulk_methods: list[str] | tuple[str, ...] = ("ssgsea",),
    rule: str = "fdr",
    alpha: float = 0.1,
    n_random_sets: int = 1000,
) -> pd.DataFrame:
    """Signature scores (every method), potency, stemness index, calibrated CSC call, in place.

    Returns signature coverage; ``uns['cscniche']`` also gets ``stemness_summary`` and ``pseudobulk_scores``.
    """
    sets, stemness_sets = _gene_sets(gene_sets, stemness_sets)
    methods = list(dict.fromkeys([*methods, stemness_method]))
    if rule == "fdr" and stemness_method == "mean" and mean_engine != "fast":
        raise InputError("csc.rule 'fdr' with stemness_method 'mean' needs scoring.mean_engine 'fast'")
    weights = None
    if mrnasi_weights:
        try:
            weights = _sc.read_mrnasi_weights(mrnasi_weights)
        except (ValueError, OSError) as exc:
            raise InputError(str(exc), sample=sample, path=str(mrnasi_weights)) from None
    try:
        coverage = _sc.score_signatures(
            adata,
            sets,
            min_fraction=min_fraction_present,
            ctrl_size=ctrl_size,
            seed=seed,
            sample=sample,
            methods=methods,
            mean_engine=mean_engine,
            ucell_max_rank=ucell_max_rank,
            aucell_n_up=aucell_n_up,
            pearson_theta=pearson_theta,
        )
    except ValueError as exc:
        raise InputError(str(exc).replace(f"sample '{sample}': ", ""), sample=sample) from None
    coverage.insert(0, "sample", sample)
    _sc.marker_expression(adata, markers)
    if "malignant" not in adata.obs:
        adata.obs["malignant"] = (adata.obs["compartment"] == "malignant").to_numpy()
    indices = []
    w = _sc.index_weights(adata.var_names, sets, stemness_sets, index_weighting)
    for m in methods:
        adata.obs[f"stemness_{m}"] = _sc.stemness_index(adata, stemness_sets, prefix=_sc.METHODS[m], weights=w)
        indices.append(f"stemness_{m}")
    adata.obs["stemness"] = adata.obs[f"stemness_{stemness_method}"]
    try:
        pot = _sc.potency(adata, weights=weights)
    except ValueError as exc:
        raise InputError(str(exc), sample=sample, path=str(mrnasi_weights)) from None
    score_cols = [f"{_sc.METHODS[m]}_{s}" for m in methods for s in sets]
    _sc.add_residuals(adata, score_cols + indices + ["stemness"] + pot[1:])
    _sc.calibrate_stemness(
        adata, sets, stemness_sets, method=stemness_method, n_random=n_random_sets, seed=seed,
        ucell_max_rank=ucell_max_rank, pearson_theta=pearson_theta, weights=w,
    )  # fmt: skip
    n_csc = _sc.call_csc(adata, quantile=quantile, rule=rule, alpha=alpha)
    info = adata.uns.setdefault("cscniche", {})
    info["signature_coverage"] = coverage
    info["stemness_sets"] = stemness_sets
    info["stemness_summary"] = _sc.stemness_summary(adata, sample=sample, markers=markers, indices=indices + pot)
    info["pseudobulk_scores"] = _sc.pseudobulk_scores(adata, sets, sample=sample, methods=pseudobulk_methods, seed=seed)
    log.info("sample %s: %d CSC among %d malignant cells", sample, n_csc, int(adata.obs["malignant"].sum()))
    return coverage


def _gene_sets(gene_sets, stemness_sets) -> tuple[dict[str, list[str]], list[str]]:
    """The signatures of the GMT files (a name defined twice is an error) and the checked stemness sets."""
    sets: dict[str, list[str]] = {}
    for path in gene_sets or ["config/genesets/csc_signatures.gmt"]:
        for name, genes in _sc.read_gmt(path).items():
            if name in sets:
                raise InputError(f"gene set '{name}' is defined in more than one GMT file", path=str(path))
            sets[name] = genes
    stemness_sets = list(stemness_sets or sets)
    unknown = [s for s in stemness_sets if s not in sets]
    if unknown:
        raise InputError(f"stemness_sets {unknown} are not in the gene-set files; known: {sorted(sets)}")
    return sets, stemness_sets


def project(
    qc_path: str | Path,
    sketch: ad.AnnData,
    *,
    sample: str,
    gene_sets: list[str | Path] | None = None,
    stemness_sets: list[str] | None = None,
    methods: list[str] | tuple[str, ...] = ("mean", "ucell", "aucell"),
    stemness_method: str = "pearson",
    index_weighting: str = "sqrt_size",
    pearson_theta: float = 100.0,
    ucell_max_rank: int = 1500,
    aucell_n_up: int | None = None,
    markers: list[str] | tuple[str, ...] = _sc.CSC_MARKERS,
    rule: str = "fdr",
    alpha: float = 0.1,
    n_random_sets: int = 1000,
    n_neighbors: int = 15,
    target_sum: float = 1e4,
    seed: int = 0,
    **_ignored,
) -> pd.DataFrame:
    """Every QC-passed cell of ``qc_path`` labelled, scored and called with the analysed ``sketch``'s fits.

    See :mod:`cscniche.project`. The keywords are those of :func:`score` (config sections scoring and csc),
    ``n_neighbors`` (embedding) and ``target_sum`` (qc); others are ignored.
    """
    from . import project as _proj

    sets, stemness_sets = _gene_sets(gene_sets, stemness_sets)
    model = _proj.SketchModel(
        sketch, sets, stemness_sets, methods=list(methods), stemness_method=stemness_method,
        index_weighting=index_weighting, pearson_theta=pearson_theta, ucell_max_rank=ucell_max_rank,
        aucell_n_up=aucell_n_up, n_neighbors=n_neighbors, rule=rule, n_random_sets=n_random_sets, seed=seed,
    )  # fmt: skip
    table = _proj.project_cells(qc_path, sketch, model, target_sum=target_sum, alpha=alpha, markers=markers)
    table.insert(1, "sample", sample)
    n_out = int((~table["in_sketch"]).sum())
    log.info("sample %s: %d cells (%d outside the sketch), %d CSC", sample, len(table), n_out, int(table["csc"].sum()))
    return table


def neighbours(adata: ad.AnnData, *, sample: str, n_permutations: int = 10000, seed: int = 0, **graph) -> pd.DataFrame:
    """Immune-neighbour enrichment on the kNN graph and, when the sample has coordinates, in space.

    ``graph``: the spatial-graph keywords of :func:`neighbourhood_graphs` (``spatial_k``, ``spatial_radius``,
    ``spatial_x``, ``spatial_y``); other keywords are ignored. See :func:`cscniche.neighbours.neighbour_enrichment`.
    """
    args = dict(
        cell_type=adata.obs["cell_type"].to_numpy(),
        compartment=adata.obs["compartment"].to_numpy(),
        csc=adata.obs["csc"].to_numpy(),
        malignant=adata.obs["malignant"].to_numpy(dtype=bool) if "malignant" in adata.obs else None,
        sample=sample,
        n_permutations=n_permutations,
        seed=seed,
    )
    tables = [
        _nb.neighbour_enrichment(adj, neighbourhood=kind, **args)
        for adj, kind in neighbourhood_graphs(adata, sample=sample, **graph)
    ]
    return pd.concat(tables, ignore_index=True)


def neighbourhood_graphs(
    adata: ad.AnnData,
    *,
    sample: str,
    spatial_k: int = 10,
    spatial_radius: float | None = None,
    spatial_x: str | None = None,
    spatial_y: str | None = None,
    single: bool = False,
    **_ignored,
) -> list[tuple[sparse.csr_matrix, str]]:
    """A sample's neighbourhood graphs as ``(adjacency, kind)``: ``knn``, then ``spatial`` when it has coordinates.

    ``knn`` is the expression kNN graph (``obsp['distances']``, :func:`cscniche.neighbours.knn_adjacency`);
    ``spatial`` links each cell to its ``spatial_k`` nearest cells, or to every cell within ``spatial_radius``
    (:func:`cscniche.neighbours.spatial_adjacency`). Coordinates: the ``obs`` columns ``spatial_x``/``spatial_y``
    when given (sample-sheet columns ``x_col``/``y_col``), else ``obsm['spatial']``. ``single=True`` returns
    only one graph: the spatial one when there are coordinates, else the kNN one.
    """
    try:
        coords = _nb.spatial_coordinates(adata, x=spatial_x or None, y=spatial_y or None)
    except ValueError as exc:
        raise InputError(f"{exc}; fix the x_col/y_col columns of the sample sheet", sample=sample) from None
    graphs = []
    if coords is None or not single:
        graphs.append((_nb.knn_adjacency(adata.obsp["distances"]), "knn"))
    if coords is not None:
        graphs.append((_nb.spatial_adjacency(coords, k=spatial_k, radius=spatial_radius), "spatial"))
    return graphs


def patient_neighbours(
    adatas: list[ad.AnnData],
    *,
    patient: str,
    n_permutations: int = 10000,
    n_top_genes: int = 2000,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    seed: int = 0,
    **_ignored,
) -> pd.DataFrame:
    """kNN (transcriptional) neighbour enrichment over all samples of one patient on a shared embedding.

    The samples are joined on their common genes and ComBat-corrected for sample
    (:func:`cscniche.neighbours.shared_knn`); CSC labels are permuted within the malignant cells of each
    sample. Rows: ``sample`` = the patient, ``neighbourhood`` = ``knn_shared``.
    """
    joint = _nb.shared_knn(
        adatas, batch_key="sample", n_top_genes=n_top_genes, n_pcs=n_pcs, n_neighbors=n_neighbors, seed=seed
    )
    obs = joint.obs
    return _nb.neighbour_enrichment(
        _nb.knn_adjacency(joint.obsp["distances"]),
        obs["cell_type"].astype(str).to_numpy(),
        obs["compartment"].astype(str).to_numpy(),
        obs["csc"].to_numpy(dtype=bool),
        malignant=obs["malignant"].to_numpy(dtype=bool) if "malignant" in obs else None,
        strata=obs["sample"].astype(str).to_numpy(),
        sample=patient,
        neighbourhood="knn_shared",
        n_permutations=n_permutations,
        seed=seed,
    )


def nhood_enrichment(
    adata: ad.AnnData, *, sample: str, n_permutations: int = 1000, seed: int = 0, **graph
) -> pd.DataFrame:
    """squidpy neighbourhood enrichment of CSC/nonCSC vs immune groups on the spatial (else kNN) graph.

    ``graph``: the spatial-graph keywords of :func:`neighbourhood_graphs`; other keywords are ignored.
    """
    [(adj, kind)] = neighbourhood_graphs(adata, sample=sample, single=True, **graph)
    return _nb.squidpy_enrichment(
        adj,
        adata.obs["group"].to_numpy(),
        adata.obs["compartment"].to_numpy(),
        sample=sample,
        neighbourhood=kind,
        n_permutations=n_permutations,
        seed=seed,
    )


def checkpoints(adata: ad.AnnData, *, sample: str, genes: str | Path = "config/checkpoints.tsv") -> pd.DataFrame:
    """Checkpoint expression table (see :func:`cscniche.checkpoints.checkpoint_table`)."""
    return _cp.checkpoint_table(adata, _cp.read_checkpoints(genes), sample=sample)


def checkpoint_pseudobulk(
    adata: ad.AnnData, *, sample: str, genes: str | Path = "config/checkpoints.tsv"
) -> pd.DataFrame:
    """Summed raw counts per group and checkpoint gene (see :func:`cscniche.checkpoints.checkpoint_pseudobulk`)."""
    return _cp.checkpoint_pseudobulk(adata, _cp.read_checkpoints(genes), sample=sample)


def niche_checkpoints(
    adata: ad.AnnData, *, sample: str, genes: str | Path = "config/checkpoints.tsv", min_cells: int = 3, **graph
) -> pd.DataFrame:
    """Checkpoints of immune cells inside CSC neighbourhoods vs elsewhere, on the kNN and the spatial graph.

    ``graph``: the spatial-graph keywords of :func:`neighbourhood_graphs`; other keywords are ignored.
    """
    table = _cp.read_checkpoints(genes)
    csc = adata.obs["csc"].to_numpy(dtype=bool)
    return pd.concat(
        [
            _cp.niche_checkpoint_table(
                adata, table, _nb.csc_niche_members(adj, csc), sample=sample, neighbourhood=kind, min_cells=min_cells
            )
            for adj, kind in neighbourhood_graphs(adata, sample=sample, **graph)
        ],
        ignore_index=True,
    )


def crosstalk(
    adata: ad.AnnData, *, sample: str, n_permutations: int = 1000, **params
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """LIANA crosstalk CSC/nonCSC -> immune and the CSC-minus-non-CSC difference.

    ``params`` (``axes``, ``expr_prop``, ``min_cells``, ``max_p``, ``seed``): see :func:`cscniche.crosstalk.crosstalk`.
    """
    return _ct.crosstalk(adata, sample=sample, n_permutations=n_permutations, **params)


def cohort_statistics(
    *,
    neighbours: str | Path,
    pseudobulk: str | Path,
    crosstalk: str | Path,
    samples: dict[str, str],
) -> dict[str, pd.DataFrame]:
    """Tests across patients from the cohort tables; ``samples`` maps sample -> patient ('' = own patient)."""
    sheet = pd.DataFrame({"sample": list(samples), "patient": [samples[s] or "" for s in samples]})
    return _cohort.cohort_statistics(
        neighbours=pd.read_csv(neighbours, sep="\t", keep_default_na=False, na_values=[""]),
        pseudobulk=pd.read_csv(pseudobulk, sep="\t"),
        crosstalk=pd.read_csv(crosstalk, sep="\t", keep_default_na=False, na_values=[""]),
        samples=sheet,
    )


CELL_COLUMNS = ["cell_id", "sample", "cell_type", "compartment", "n_genes"]


def cells_table(adata: ad.AnnData) -> pd.DataFrame:
    """The per-cell output table: ids, labels, scores, stemness, CSC flag, marker columns, UMAP and truth."""
    obs = adata.obs
    df = pd.DataFrame({"cell_id": adata.obs_names.astype(str)})
    for c in [
        "sample",
        "cell_type",
        "cell_type_source",
        "compartment",
        "n_genes",
        "total_counts",
        "pct_counts_mt",
        "leiden",
    ]:
        if c in obs:
            df[c] = obs[c].astype(str).to_numpy() if obs[c].dtype.name == "category" else obs[c].to_numpy()
    prefixes = ("score_", "ucell_", "aucell_", "pearson_", "stemness_", "potency_", "mrnasi")
    scores = [c for c in obs.columns if c.startswith(prefixes) and c not in ("stemness_pvalue", "stemness_resid")]
    for c in ["malignant", "cnv_score", "n_detected"] + scores + ["stemness", "stemness_resid", "stemness_pvalue",
              "csc_fdr", "csc", "group"]:  # fmt: skip
        if c in obs or c in ("malignant", "stemness", "csc", "group"):
            df[c] = obs[c].to_numpy()
    for c in obs.columns:
        if c.startswith(("expr_", "detected_", "truth_")):
            df[c] = obs[c].astype(str).to_numpy() if obs[c].dtype.name == "category" else obs[c].to_numpy()
    for key, name in (("X_umap", "umap"), ("spatial", "spatial")):
        if key in adata.obsm:
            m = np.asarray(adata.obsm[key])
            df[f"{name}_1"], df[f"{name}_2"] = m[:, 0], m[:, 1]
    return df


def concat_tables(paths: list[str | Path], *, sep: str = "\t") -> pd.DataFrame:
    """Concatenate per-sample tables (same columns) in the order given."""
    frames = [pd.read_csv(p, sep=sep) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def export(
    adata: ad.AnnData, *, neighbours: str | Path | None = None, checkpoints: str | Path | None = None
) -> pd.DataFrame:
    """Store the neighbour and checkpoint tables in ``uns['cscniche']`` and return :func:`cells_table`."""
    info = adata.uns.setdefault("cscniche", {})
    for key, path in (("immune_neighbours", neighbours), ("checkpoints", checkpoints)):
        if path is not None:
            table = pd.read_csv(path, sep="\t")
            text = table.select_dtypes(include="object").columns
            table[text] = table[text].fillna("").astype(str)
            info[key] = table
    return cells_table(adata)


#: gzip settings that make ``.tsv.gz`` outputs byte-identical across runs (no timestamp in the header)
GZIP = {"method": "gzip", "mtime": 0}
