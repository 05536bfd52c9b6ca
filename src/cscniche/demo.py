"""A deterministic, liver-tumour-like demo dataset with planted truth.

The generator draws negative-binomial counts for hepatocyte-like malignant cells (with a planted
stem-like subpopulation), T/NK/B cells, tumour-associated macrophages (TAMs), MDSC-like cells,
fibroblasts and endothelial cells, and lays them out in a tissue in which the stem-like cells sit
in niches with TAMs and MDSC-like cells while T and NK cells are kept out of those niches.

Truth columns: ``obs['truth_cell_type']``, ``obs['truth_compartment']``, ``obs['truth_stem']``.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

#: marker genes per demo cell type (names match ``cscniche:markers.tsv``)
TYPE_MARKERS = {
    "Malignant": [
        "EPCAM",
        "KRT8",
        "KRT18",
        "KRT19",
        "ALB",
        "APOA1",
        "APOB",
        "TTR",
        "SERPINA1",
        "HP",
        "FGB",
        "GPC3",
        "AFP",
    ],
    "T_CD8": ["CD3D", "CD3E", "CD8A", "CD8B", "GZMK", "CCL5", "PDCD1", "LAG3", "HAVCR2", "TIGIT"],
    "T_CD4": ["CD3D", "CD3E", "CD4", "IL7R", "CCR7", "LTB"],
    "Treg": ["CD3D", "CD3E", "CD4", "FOXP3", "IL2RA", "CTLA4", "TNFRSF4", "BATF", "TIGIT"],
    "NK": ["NKG7", "GNLY", "KLRD1", "KLRF1", "PRF1", "NCAM1", "KLRC1"],
    "B": ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1"],
    "Macrophage": ["CD68", "CD163", "C1QA", "C1QB", "C1QC", "APOE", "MRC1", "SIRPA", "CD200R1", "LGALS9"],
    "MDSC_like": ["S100A8", "S100A9", "CSF3R", "FCGR3B", "CXCR2", "ARG1", "SIRPA"],
    "Fibroblast": ["COL1A1", "COL1A2", "COL3A1", "DCN", "LUM", "ACTA2", "PDGFRB"],
    "Endothelial": ["PECAM1", "VWF", "CDH5", "PLVAP", "KDR", "ENG"],
}
COMPARTMENT = {
    "Malignant": "malignant",
    "Fibroblast": "stromal",
    "Endothelial": "stromal",
}
#: genes raised in the stem-like cells: the four CSC markers and 18 Wnt, NOTCH and IL-6/JAK/STAT3 genes
PLANTED_STEM = [
    "PROM1", "THY1", "CD44", "EPCAM",
    "AXIN2", "LEF1", "TCF7", "MYC", "NKD1", "CTNNB1",
    "HES1", "NOTCH1", "JAG1", "DLL1", "HEYL", "NOTCH3",
    "STAT3", "SOCS3", "IL6ST", "OSMR", "PIM1", "JUN",
]  # fmt: skip
#: immune-evasion changes in stem-like cells (fold change of the mean)
PLANTED_CHECKPOINT = {"CD274": 3.0, "CD47": 2.5, "CD200": 3.0, "HLA-A": 0.35, "HLA-B": 0.35, "HLA-C": 0.4, "B2M": 0.4}
HEPATOCYTE = ["ALB", "APOA1", "APOB", "TTR", "SERPINA1", "HP", "FGB"]
UBIQUITOUS = ["ACTB", "GAPDH", "B2M", "HLA-A", "HLA-B", "HLA-C", "HLA-E", "TAP1", "CD47", "MALAT1", "TMSB4X"]
OTHER_CHECKPOINT = ["CD274", "PDCD1LG2", "CD200", "PVR", "NECTIN2", "CD276", "VTCN1", "BTLA", "CD96"]
MT_GENES = ["MT-CO1", "MT-CO2", "MT-ND1", "MT-ND4", "MT-CYB"]

DEFAULT_SIZES = {
    "Malignant": 1200,
    "T_CD8": 220,
    "T_CD4": 160,
    "Treg": 80,
    "NK": 90,
    "B": 90,
    "Macrophage": 200,
    "MDSC_like": 110,
    "Fibroblast": 120,
    "Endothelial": 100,
}


def _place(rng, n, centre, radius):
    r = radius * np.sqrt(rng.random(n))
    a = 2 * np.pi * rng.random(n)
    return np.column_stack([centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)])


def make_demo(
    seed: int = 0,
    *,
    sizes: dict[str, int] | None = None,
    stem_fraction: float = 0.15,
    stem_effect: float = 4.0,
    n_background: int = 1500,
    gene_sets: dict[str, list[str]] | list[str] | None = None,
    mean_library_size: float = 4000.0,
    dispersion: float = 4.0,
    cnv: bool = True,
) -> ad.AnnData:
    """Generate the demo tumour (raw counts in ``X``, CSR float32).

    Parameters
    ----------
    seed
        Random seed; the same seed gives the same data.
    sizes
        Cells per type (keys of :data:`DEFAULT_SIZES`).
    stem_fraction
        Fraction of malignant cells that are stem-like.
    stem_effect
        Fold change of :data:`PLANTED_STEM` genes in stem-like cells.
    gene_sets
        Extra gene sets whose genes are added to the gene universe (unplanted, at background level): a dict
        name -> genes, or a list of GMT files.
    cnv
        Plant clonal copy-number changes in the malignant cells (see :func:`synthetic_genome`); the genes'
        synthetic positions are in ``var['chromosome'|'start'|'end']`` either way.
    """
    if gene_sets is not None and not isinstance(gene_sets, dict):
        from .stemness._score import read_gmt

        gene_sets = {name: genes for path in gene_sets for name, genes in read_gmt(path).items()}
    rng = np.random.default_rng(seed)
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    extra = sorted({g for genes in (gene_sets or {}).values() for g in genes})
    named = list(
        dict.fromkeys(
            [g for m in TYPE_MARKERS.values() for g in m]
            + PLANTED_STEM
            + list(PLANTED_CHECKPOINT)
            + UBIQUITOUS
            + OTHER_CHECKPOINT
            + extra
            + MT_GENES
        )
    )
    genes = named + [f"BG{i:05d}" for i in range(n_background)]
    gidx = {g: i for i, g in enumerate(genes)}
    n_genes = len(genes)

    # base profile: log-normal gene means shared by all cells
    base = rng.lognormal(mean=0.0, sigma=1.2, size=n_genes)
    types = list(sizes)
    profiles = {}
    for t in types:
        p = base * rng.lognormal(0.0, 0.35, size=n_genes)  # type-specific background shifts
        for g in TYPE_MARKERS[t]:
            p[gidx[g]] = base[gidx[g]] + rng.uniform(15, 40)
        for g in UBIQUITOUS:
            p[gidx[g]] = rng.uniform(8, 30)
        for g in MT_GENES:
            p[gidx[g]] = rng.uniform(10, 25)
        profiles[t] = p

    labels = np.concatenate([[t] * sizes[t] for t in types])
    n = labels.size
    stem = np.zeros(n, dtype=bool)
    mal_idx = np.flatnonzero(labels == "Malignant")
    n_stem = int(round(stem_fraction * mal_idx.size))
    stem[rng.choice(mal_idx, n_stem, replace=False)] = True

    mu = np.vstack([profiles[t] for t in labels])
    stem_rows = np.flatnonzero(stem)
    for g in PLANTED_STEM:
        # every malignant cell expresses the pathway genes a little; stem-like cells many-fold more
        mu[mal_idx, gidx[g]] = np.maximum(mu[mal_idx, gidx[g]], 2.0)
        mu[stem_rows, gidx[g]] *= stem_effect
    for g, fold in PLANTED_CHECKPOINT.items():
        mu[mal_idx, gidx[g]] = np.maximum(mu[mal_idx, gidx[g]], 3.0)
        mu[stem_rows, gidx[g]] *= fold
    for g in HEPATOCYTE:
        mu[stem_rows, gidx[g]] *= 0.5
    # positions and copy-number changes come from their own stream, so the draws above stay as they were
    var, fold = synthetic_genome(genes, seed)
    if cnv:
        mu[mal_idx] *= fold[None, :]
    mu /= mu.sum(axis=1, keepdims=True)
    lib = rng.lognormal(np.log(mean_library_size), 0.35, size=n)
    mu *= lib[:, None]
    lam = rng.gamma(shape=dispersion, scale=mu / dispersion)
    counts = rng.poisson(lam).astype(np.float32)

    coords = _layout(rng, labels, stem)
    order = rng.permutation(n)
    comp = np.array([COMPARTMENT.get(t, "immune") for t in labels])
    obs = pd.DataFrame(
        {
            "truth_cell_type": pd.Categorical(labels[order]),
            "truth_compartment": pd.Categorical(comp[order]),
            "truth_stem": stem[order],
        },
        index=[f"cell{i:05d}" for i in range(n)],
    )
    adata = ad.AnnData(sparse.csr_matrix(counts[order]), obs=obs, var=var)
    adata.obsm["spatial"] = coords[order]
    adata.uns["demo"] = {
        "seed": seed,
        "stem_fraction": stem_fraction,
        "stem_effect": stem_effect,
        "planted_stem_genes": PLANTED_STEM,
        "planted_checkpoint_fold": PLANTED_CHECKPOINT,
        "niche": "stem-like cells sit in niches with Macrophage and MDSC_like cells; T/NK cells are kept out",
        "cnv": "; ".join(f"{c} x{f:g}" for c, f in CNV_EVENTS.items()) if cnv else "none",
        "positions": "synthetic: genes placed at random on chr1-chr22 (not their real positions)",
    }
    return adata


#: clonal copy-number changes of the demo's malignant cells (expression fold per chromosome)
CNV_EVENTS = {"chr3": 2.0, "chr8": 2.0, "chr20": 1.8, "chr4": 0.5, "chr13": 0.5, "chr17": 0.5}


def synthetic_genome(genes: list[str], seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic positions for the demo genes and the expression fold of each gene in malignant cells.

    The demo's gene universe (real marker names and ``BG*`` background genes) is laid out at random on
    chr1-chr22 (chromosome sizes proportional to 23 - n, 1 Mb apart); positions are synthetic, not the real
    ones, so the CNV step needs no gene table for the demo. Genes on the chromosomes of :data:`CNV_EVENTS`
    get that fold in malignant cells.
    """
    rng = np.random.default_rng([seed, 2026])
    chroms = [f"chr{i}" for i in range(1, 23)]
    weight = np.array([23 - i for i in range(1, 23)], dtype=float)
    chrom = rng.choice(chroms, size=len(genes), p=weight / weight.sum())
    start = np.zeros(len(genes), dtype=np.int64)
    for c in chroms:
        idx = np.flatnonzero(chrom == c)
        start[rng.permutation(idx)] = 1_000_000 * (1 + np.arange(idx.size))
    var = pd.DataFrame({"chromosome": chrom, "start": start, "end": start + 20_000}, index=genes)
    fold = np.array([CNV_EVENTS.get(c, 1.0) for c in chrom])
    return var, fold


def _layout(rng, labels: np.ndarray, stem: np.ndarray) -> np.ndarray:
    """Tissue coordinates (micrometres): a round tumour with stem niches, a stromal rim, a B-cell follicle."""
    n = labels.size
    xy = np.zeros((n, 2))
    centre = np.array([500.0, 500.0])
    niches = _place(rng, 6, centre, 280)
    # non-stem malignant cells fill the tumour
    sel = (labels == "Malignant") & ~stem
    xy[sel] = _place(rng, sel.sum(), centre, 400)
    sel = np.flatnonzero(stem)
    which = rng.integers(0, len(niches), sel.size)
    xy[sel] = niches[which] + _place(rng, sel.size, (0, 0), 45)
    # suppressive myeloid cells: 75 % in the niches, the rest anywhere in the tumour
    for t in ("Macrophage", "MDSC_like"):
        sel = np.flatnonzero(labels == t)
        in_niche = rng.random(sel.size) < 0.75
        w = rng.integers(0, len(niches), sel.size)
        xy[sel[in_niche]] = niches[w[in_niche]] + _place(rng, in_niche.sum(), (0, 0), 60)
        xy[sel[~in_niche]] = _place(rng, (~in_niche).sum(), centre, 400)
    # T and NK cells infiltrate the tumour but are kept out of the niches
    for t in ("T_CD8", "T_CD4", "Treg", "NK"):
        sel = np.flatnonzero(labels == t)
        pts = []
        while len(pts) < sel.size:
            cand = _place(rng, 4 * sel.size, centre, 420)
            far = np.min(np.linalg.norm(cand[:, None, :] - niches[None, :, :], axis=2), axis=1) > 110
            pts.extend(cand[far])
        xy[sel] = np.array(pts[: sel.size])
    sel = np.flatnonzero(labels == "B")
    xy[sel] = _place(rng, sel.size, (900, 900), 70)
    for t in ("Fibroblast", "Endothelial"):
        sel = np.flatnonzero(labels == t)
        r = rng.uniform(410, 480, sel.size)
        a = rng.uniform(0, 2 * np.pi, sel.size)
        xy[sel] = centre + np.column_stack([r * np.cos(a), r * np.sin(a)])
    return xy
