"""The niche steps (rules ``neighbours``, ``nhood_enrichment``, ``checkpoints``, ``checkpoint_pseudobulk``,
``niche_checkpoints``, ``crosstalk``, ``export``, ``patient_neighbours``): AnnData in, tables out."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._errors import InputError
from .._params import CheckpointsParams, CrosstalkParams, EmbeddingParams, NeighboursParams
from .._scipy_stats import false_discovery_control
from . import _checkpoints as _cp
from . import _crosstalk as _ct
from . import _graphs as _nb
from . import spatial_null as _sn

#: columns of the immune-neighbour table (``immune_neighbours.tsv``)
#: (spatial_null's columns with the step's own: CSC definition, group, rho of the continuous rows, sketch flag)
NEIGHBOUR_COLUMNS = [
    c
    for col in _sn.COLUMNS
    for c in (col, *{"neighbourhood": ["definition"], "null": ["group"], "z": ["rho"], "noncsc_density": ["sketch"]}.get(col, []))
]  # fmt: skip
KNN_NOTE = "transcriptional neighbours, not spatial"


def _with_knn_note(notes) -> list[str]:
    """Each note prefixed with :data:`KNN_NOTE` (the note alone where there was none)."""
    return [f"{KNN_NOTE}; {n}" if n else KNN_NOTE for n in notes]


def neighbours(
    adata: ad.AnnData,
    *,
    sample: str,
    neighbours: NeighboursParams = NeighboursParams(),
    spatial_x: str | None = None,
    spatial_y: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Immune-neighbour composition of CSC vs non-CSC malignant cells, per CSC definition, plus stemness rows.

    Per neighbourhood (``knn``: the expression kNN graph, *transcriptional* neighbours, every row's note says
    so; ``spatial``: physical neighbours when the sample has coordinates) and CSC definition
    (:func:`cscniche.niche._definitions.csc_definitions`): one row per immune type from
    :func:`cscniche.niche.spatial_null.spatial_neighbour_enrichment` (statistic: the type's share among
    CSC neighbours minus its share among non-CSC neighbours; one test per type, no mirror nonCSC row).
    Null: ``neighbours.spatial_null`` for ``spatial`` (default ``patch_regrowth``: each CSC patch re-grown
    with its cell count around a random malignant cell; or ``spatial_shift``: the CSC label field moved
    rigidly against the tissue), ``label_permutation`` for ``knn``. Then ``definition = continuous`` rows:
    Spearman ``rho`` of ``stemness`` with each immune type's neighbour share across malignant cells
    (:func:`cscniche.niche._continuous.neighbour_share_association`; spatial: stemness field shifted, for
    either spatial null, since a continuous field has no patches to re-grow; knn or a spatial
    ``label_permutation``: permuted). ``fdr``: BH over the immune types of one neighbourhood and definition. ``sketch``: whether the
    sample was analysed on a sketch (spatial rows then say how the graph is affected).
    """
    from . import _continuous, _definitions
    from .spatial_null import spatial_neighbour_enrichment

    obs = adata.obs
    cell_type = obs["cell_type"].astype(str).to_numpy()
    compartment = obs["compartment"].astype(str).to_numpy()
    malignant = _definitions.malignant_mask(adata)
    defs = _definitions.csc_definitions(adata)
    is_sketch, sketch_note = _definitions.sketch_info(adata)
    try:
        coords = _nb.spatial_coordinates(adata, x=spatial_x or None, y=spatial_y or None)
    except ValueError as exc:
        raise InputError(f"{exc}; fix the x_col/y_col columns of the sample sheet", sample=sample) from None
    kinds = [("knn", _nb.knn_adjacency(adata.obsp["distances"]))]
    if coords is not None:
        kinds.append(("spatial", None))
    tables = []
    for kind, adj in kinds:
        null = neighbours.spatial_null if kind == "spatial" else "label_permutation"
        xy = coords if coords is not None else np.zeros((adata.n_obs, 2))
        if kind == "spatial":
            adj, _ = _sn_graph(xy, neighbours)
        for name, csc in defs:
            t = spatial_neighbour_enrichment(
                xy,
                cell_type,
                compartment,
                csc,
                malignant,
                k=neighbours.spatial_k,
                radius=neighbours.spatial_radius,
                adj=None if kind == "spatial" else adj,
                null=null,
                n_permutations=neighbours.n_permutations,
                seed=seed,
                sample=sample,
                neighbourhood=kind,
            )
            t["definition"] = name
            t["group"] = np.where(t["immune_type"].astype(str) != "", "CSC", "")
            tables.append(t)
        if "stemness" in obs:
            cont_null = "label_permutation" if null == "label_permutation" else "spatial_shift"
            res = _continuous.neighbour_share_association(
                adj,
                obs["stemness"].to_numpy(dtype=np.float64),
                cell_type,
                compartment,
                malignant,
                coords=xy,
                null=cont_null,
                n_permutations=neighbours.n_permutations,
                seed=seed,
            )
            ok = np.isfinite(res["p"])
            fdr = np.full(res["p"].shape, np.nan)
            if ok.any():
                fdr[ok] = false_discovery_control(res["p"][ok], method="bh")
            cont = pd.DataFrame(
                {
                    "sample": sample,
                    "neighbourhood": kind,
                    "definition": _definitions.CONTINUOUS,
                    "null": ("stemness_shift" if cont_null == "spatial_shift" else "stemness_permutation"),
                    "group": "stemness",
                    "immune_type": res["types"] if len(res["types"]) else [""],
                    "n_csc": np.nan,
                    "n_noncsc": np.nan,
                    "rho": res["rho"] if len(res["types"]) else [np.nan],
                    "p": res["p"] if len(res["types"]) else [np.nan],
                    "fdr": fdr if len(res["types"]) else [np.nan],
                    "n_permutations": res["n_permutations"],
                    "note": res["note"],
                }
            )
            cont["n_malignant_tested"] = res["n_cells"]
            flat = cont["rho"].isna() & cont["note"].fillna("").eq("") & cont["immune_type"].ne("")
            cont.loc[flat, "note"] = (
                "no rho: the type's share is the same (mostly 0) in every malignant cell's neighbours"
            )
            tables.append(cont)
    out = pd.concat(tables, ignore_index=True).reindex(columns=NEIGHBOUR_COLUMNS)
    out["sketch"] = is_sketch
    note = out["note"].fillna("").astype(str)
    knn = out["neighbourhood"] == "knn"
    out.loc[knn, "note"] = _with_knn_note(note[knn])
    if sketch_note:
        sp = out["neighbourhood"] == "spatial"
        out.loc[sp, "note"] = [f"{n}; {sketch_note}" if n else sketch_note for n in note[sp]]
    return out


def _sn_graph(coords: np.ndarray, neighbours: NeighboursParams):
    from .spatial_null import spatial_graph

    return spatial_graph(coords, k=neighbours.spatial_k, radius=neighbours.spatial_radius)


def neighbourhood_graphs(
    adata: ad.AnnData,
    *,
    sample: str,
    neighbours: NeighboursParams = NeighboursParams(),
    spatial_x: str | None = None,
    spatial_y: str | None = None,
    single: bool = False,
) -> list[tuple[sparse.csr_matrix, str]]:
    """A sample's neighbourhood graphs as ``(adjacency, kind)``: ``knn``, then ``spatial`` when it has coordinates.

    ``knn`` is the expression kNN graph (``obsp['distances']``, :func:`cscniche.niche._graphs.knn_adjacency`);
    ``spatial`` links each cell to its ``neighbours.spatial_k`` nearest cells, or to every cell within
    ``neighbours.spatial_radius`` (:func:`cscniche.niche._graphs.spatial_adjacency`). Coordinates: the ``obs``
    columns ``spatial_x``/``spatial_y`` when given (sample-sheet columns ``x_col``/``y_col``), else
    ``obsm['spatial']``. ``single=True`` returns only one graph: the spatial one when there are coordinates,
    else the kNN one.
    """
    try:
        coords = _nb.spatial_coordinates(adata, x=spatial_x or None, y=spatial_y or None)
    except ValueError as exc:
        raise InputError(f"{exc}; fix the x_col/y_col columns of the sample sheet", sample=sample) from None
    graphs = []
    if coords is None or not single:
        graphs.append((_nb.knn_adjacency(adata.obsp["distances"]), "knn"))
    if coords is not None:
        adjacency = _nb.spatial_adjacency(coords, k=neighbours.spatial_k, radius=neighbours.spatial_radius)
        graphs.append((adjacency, "spatial"))
    return graphs


def patient_neighbours(
    adatas: list[ad.AnnData],
    *,
    patient: str,
    neighbours: NeighboursParams = NeighboursParams(),
    embedding: EmbeddingParams = EmbeddingParams(),
    seed: int = 0,
) -> pd.DataFrame:
    """kNN (transcriptional) neighbour enrichment over all samples of one patient on a shared embedding.

    The samples are joined on their common genes and ComBat-corrected for sample
    (:func:`cscniche.niche._graphs.shared_knn`, sized by ``embedding``); CSC labels are permuted within the
    malignant cells of each sample.

    Returns
    -------
    The :func:`cscniche.niche._graphs.neighbour_enrichment` table of the CSC rows (one test per immune type;
    the mirrored nonCSC rows dropped, BH over the CSC rows) with ``sample`` = the patient, ``neighbourhood`` =
    ``knn_shared``, ``definition`` = ``primary`` (``obs['csc']``) and the note "transcriptional neighbours".
    """
    joint = _nb.shared_knn(
        adatas,
        batch_key="sample",
        n_top_genes=embedding.n_top_genes,
        n_pcs=embedding.n_pcs,
        n_neighbors=embedding.n_neighbors,
        seed=seed,
    )
    obs = joint.obs
    df = _nb.neighbour_enrichment(
        _nb.knn_adjacency(joint.obsp["distances"]),
        obs["cell_type"].astype(str).to_numpy(),
        obs["compartment"].astype(str).to_numpy(),
        obs["csc"].to_numpy(dtype=bool),
        malignant=obs["malignant"].to_numpy(dtype=bool) if "malignant" in obs else None,
        strata=obs["sample"].astype(str).to_numpy(),
        sample=patient,
        neighbourhood="knn_shared",
        n_permutations=neighbours.n_permutations,
        seed=seed,
    )
    # one test per immune type: the nonCSC row mirrors the CSC row (same permutations), so it is dropped
    df = df[df["group"].astype(str) != "nonCSC"].reset_index(drop=True)
    ok = df["p"].notna().to_numpy()
    if ok.any():
        df.loc[ok, "fdr"] = false_discovery_control(df.loc[ok, "p"].to_numpy(dtype=float), method="bh")
    note = df["note"].fillna("").astype(str)
    df["note"] = _with_knn_note(note)
    df.insert(2, "definition", "primary")
    return df


def nhood_enrichment(
    adata: ad.AnnData,
    *,
    sample: str,
    neighbours: NeighboursParams = NeighboursParams(),
    spatial_x: str | None = None,
    spatial_y: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """squidpy neighbourhood enrichment of CSC/nonCSC vs immune groups on the spatial (else kNN) graph.

    One block per CSC definition (``definition`` column); ``sketch`` says whether the sample is a sketch; a kNN
    graph (no coordinates) is said to be transcriptional in ``note``.

    Returns
    -------
    One row per pair of groups (z-score, counts) of :func:`cscniche.niche._graphs.squidpy_enrichment`.
    """
    from . import _definitions

    [(adj, kind)] = neighbourhood_graphs(
        adata, sample=sample, neighbours=neighbours, spatial_x=spatial_x, spatial_y=spatial_y, single=True
    )
    out = []
    for name, csc in _definitions.csc_definitions(adata):
        t = _nb.squidpy_enrichment(
            adj,
            _definitions.definition_groups(adata, csc),
            adata.obs["compartment"].to_numpy(),
            sample=sample,
            neighbourhood=kind,
            n_permutations=neighbours.n_permutations,
            seed=seed,
        )
        t.insert(2, "definition", name)
        out.append(t)
    df = pd.concat(out, ignore_index=True)
    df.insert(len(df.columns) - 1, "sketch", _definitions.sketch_info(adata)[0])
    if kind == "knn":
        note = df["note"].fillna("").astype(str)
        df["note"] = _with_knn_note(note)
    return df


def checkpoints(
    adata: ad.AnnData,
    *,
    sample: str,
    genes: str | Path | None = None,
    checkpoints: CheckpointsParams = CheckpointsParams(),
) -> pd.DataFrame:
    """Checkpoint expression per group, per CSC definition, plus stemness rows.

    See :func:`cscniche.niche._checkpoints.checkpoint_table` (one block per CSC definition of
    :func:`cscniche.niche._definitions.csc_definitions`, minimum-expression rule ``checkpoints.min_expr_frac`` /
    ``checkpoints.min_expr_cells``) and :func:`cscniche.niche._checkpoints.continuous_table`
    (``definition = continuous``: Spearman rho of stemness with each gene across malignant cells).
    ``genes``: the checkpoint gene table (default: ``checkpoints.genes``).

    Returns
    -------
    One row per definition, group and checkpoint gene (mean expression, fraction expressing, CSC vs non-CSC
    contrast or rho), with ``definition`` and ``sketch`` columns.
    """
    from . import _definitions

    table = _cp.read_checkpoints(genes or checkpoints.genes)
    out = []
    for name, csc in _definitions.csc_definitions(adata):
        out.append(
            _cp.checkpoint_table(
                adata,
                table,
                sample=sample,
                group=_definitions.definition_groups(adata, csc),
                definition=name,
                min_expr_frac=checkpoints.min_expr_frac,
                min_expr_cells=checkpoints.min_expr_cells,
                min_cells=checkpoints.niche_min_cells,
            )
        )
    if not any(len(d) for d in out):  # no checkpoint gene in the data
        return pd.DataFrame(columns=_cp.COLUMNS)
    out.append(_cp.continuous_table(adata, table, sample=sample, malignant=_definitions.malignant_mask(adata)))
    df = pd.concat([d for d in out if len(d)], ignore_index=True)
    df["sketch"] = _definitions.sketch_info(adata)[0]
    return df[_cp.COLUMNS]


_checkpoints_step = checkpoints  # the keyword ``checkpoints`` (the config section) shadows it in checkpoint_tables


def checkpoint_pseudobulk(adata: ad.AnnData, *, sample: str, genes: str | Path | None = None) -> pd.DataFrame:
    """Summed raw counts per group and checkpoint gene, per CSC definition (see
    :func:`cscniche.niche._checkpoints.checkpoint_pseudobulk`).

    Returns
    -------
    One row per definition, group and checkpoint gene (counts, cells, library size), with a ``sketch`` column.
    """
    from . import _definitions

    table = _cp.read_checkpoints(genes or CheckpointsParams().genes)
    out = []
    for name, csc in _definitions.csc_definitions(adata):
        t = _cp.checkpoint_pseudobulk(adata, table, sample=sample, group=_definitions.definition_groups(adata, csc))
        t.insert(1, "definition", name)
        out.append(t)
    df = pd.concat(out, ignore_index=True)
    df["sketch"] = _definitions.sketch_info(adata)[0]
    return df


def niche_checkpoints(
    adata: ad.AnnData,
    *,
    sample: str,
    genes: str | Path | None = None,
    checkpoints: CheckpointsParams = CheckpointsParams(),
    neighbours: NeighboursParams = NeighboursParams(),
    spatial_x: str | None = None,
    spatial_y: str | None = None,
) -> pd.DataFrame:
    """Checkpoints of immune cells inside CSC neighbourhoods vs elsewhere, on the *spatial* graph only.

    The kNN graph is left out: immune cells that are expression neighbours of CSC look like tumour cells, so
    their tumour-expressed genes are confounded by the similarity itself (issue 16). A sample without
    coordinates gets one note row. One block per CSC definition; ``genes`` defaults to ``checkpoints.genes``;
    a type is tested with ``checkpoints.niche_min_cells`` cells on each side and a gene with the
    minimum-expression rule (``checkpoints.min_expr_frac`` / ``min_expr_cells``).

    Returns
    -------
    One row per definition, immune cell type and checkpoint gene (in vs out of the niche), ``sketch`` column.
    """
    from . import _definitions

    table = _cp.read_checkpoints(genes or checkpoints.genes)
    is_sketch, sketch_note = _definitions.sketch_info(adata)
    graphs = [
        (adj, kind)
        for adj, kind in neighbourhood_graphs(
            adata, sample=sample, neighbours=neighbours, spatial_x=spatial_x, spatial_y=spatial_y
        )
        if kind == "spatial"
    ]
    if not graphs:
        from .._tables import note_row

        df = note_row(
            _cp.NICHE_COLUMNS,
            "no spatial coordinates: dissociated cells have no physical niche (see the cohort table csc_burden_immune)",
            blank=("immune_type", "gene", "role", "definition"),
            sample=sample,
            neighbourhood="",
        )
        df["sketch"] = is_sketch
        return df
    [(adj, kind)] = graphs
    out = []
    for name, csc in _definitions.csc_definitions(adata):
        out.append(
            _cp.niche_checkpoint_table(
                adata,
                table,
                _nb.csc_niche_members(adj, csc),
                sample=sample,
                neighbourhood=kind,
                min_cells=checkpoints.niche_min_cells,
                group=_definitions.definition_groups(adata, csc),
                definition=name,
                min_expr_frac=checkpoints.min_expr_frac,
                min_expr_cells=checkpoints.min_expr_cells,
            )
        )
    df = pd.concat(out, ignore_index=True)
    df["sketch"] = is_sketch
    if sketch_note:
        note = df["note"].fillna("").astype(str)
        df["note"] = [f"{n}; {sketch_note}" if n else sketch_note for n in note]
    return df


def checkpoint_tables(
    adata: ad.AnnData,
    *,
    sample: str,
    genes: str | Path | None = None,
    checkpoints: CheckpointsParams = CheckpointsParams(),
    neighbours: NeighboursParams = NeighboursParams(),
    spatial_x: str | None = None,
    spatial_y: str | None = None,
) -> dict[str, pd.DataFrame]:
    """The three checkpoint tables of a sample from one read of its AnnData (rule ``checkpoints``):
    ``{"checkpoints": checkpoints(...), "pseudobulk": checkpoint_pseudobulk(...), "niche": niche_checkpoints(...)}``.

    One step instead of three saves two interpreter starts and reads per sample (issue 18); each table is the
    one its own function returns (tested equal).
    """
    genes = genes or checkpoints.genes
    return {
        "checkpoints": _checkpoints_step(adata, sample=sample, genes=genes, checkpoints=checkpoints),
        "pseudobulk": checkpoint_pseudobulk(adata, sample=sample, genes=genes),
        "niche": niche_checkpoints(
            adata,
            sample=sample,
            genes=genes,
            checkpoints=checkpoints,
            neighbours=neighbours,
            spatial_x=spatial_x,
            spatial_y=spatial_y,
        ),
    }


def crosstalk(
    adata: ad.AnnData, *, sample: str, crosstalk: CrosstalkParams = CrosstalkParams(), seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """LIANA crosstalk CSC/nonCSC -> immune and the receiver-aware CSC-vs-non-CSC contrast, per CSC definition.

    See :func:`cscniche.niche._crosstalk.crosstalk` (``crosstalk``: the config section): LIANA runs on the
    primary definition; the contrast (``interaction_diff`` = ligand difference x receptor mean in the receiver,
    p = max(ligand permutation p, receptor-presence p), BH over rows) on every definition.

    Returns
    -------
    The crosstalk table (one row per sender, receiver and ligand-receptor pair) and the difference table.
    """
    from . import _definitions

    return _ct.crosstalk(
        adata,
        sample=sample,
        axes=list(crosstalk.axes),
        n_permutations=crosstalk.n_permutations,
        expr_prop=crosstalk.expr_prop,
        min_cells=crosstalk.min_cells,
        max_p=crosstalk.max_p,
        seed=seed,
        definitions=[(n, _definitions.definition_groups(adata, c)) for n, c in _definitions.csc_definitions(adata)],
        sketch=_definitions.sketch_info(adata)[0],
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
    from ._definitions import definition_names

    for name in definition_names(adata):  # one CSC flag per definition
        c = f"csc_{name}"
        if c in obs and c not in df:
            df[c] = obs[c].to_numpy(dtype=bool)
    for c in obs.columns:
        if c.startswith(("expr_", "detected_", "truth_")):
            df[c] = obs[c].astype(str).to_numpy() if obs[c].dtype.name == "category" else obs[c].to_numpy()
    for key, name in (("X_umap", "umap"), ("spatial", "spatial")):
        if key in adata.obsm:
            m = np.asarray(adata.obsm[key])
            df[f"{name}_1"], df[f"{name}_2"] = m[:, 0], m[:, 1]
    return df


def export(
    adata: ad.AnnData, *, neighbours: str | Path | None = None, checkpoints: str | Path | None = None
) -> pd.DataFrame:
    """Store the neighbour and checkpoint tables in ``uns['cscniche']`` and return :func:`cells_table`.

    Sets
    ----
    ``uns['cscniche']['immune_neighbours']`` and ``uns['cscniche']['checkpoints']`` (when given).
    """
    info = adata.uns.setdefault("cscniche", {})
    for key, path in (("immune_neighbours", neighbours), ("checkpoints", checkpoints)):
        if path is not None:
            table = pd.read_csv(path, sep="\t")
            text = table.select_dtypes(include="object").columns
            table[text] = table[text].fillna("").astype(str)
            info[key] = table
    return cells_table(adata)
