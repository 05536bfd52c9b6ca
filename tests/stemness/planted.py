"""Planted held-out-style tumours with clonal arm-level CNVs and non-stem programs, and an evaluation of the
library's stemness path on them.

:func:`planted_tumour` (numpy/scipy/pandas/anndata only) returns raw counts of immune, stromal and malignant
cells with author-like labels (``obs['celltype_major']``), real gene symbols and hg38 positions, a clonal copy-
number profile in every malignant cell, programs each in ~10 % of malignant cells (IFN response, immediate-
early/dissociation stress, cycling) and optionally a stem-like population. Truth: ``obs['truth_stem']``,
``obs['truth_program']`` (stem | IFN | IEG | cycling | none for malignant cells, reference for the others),
``obs['truth_malignant']``; ``uns['planted']`` records the arms, factors and program genes.

:func:`evaluate` runs the library (QC/normalise, embed, annotate from the author labels, CNV, score with the
default index, pooled null and CSC definitions) and reports the stemness AUROC among malignant cells and the calls
of every CSC definition (precision, recall, share of each non-stem program's cells called).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "src" / "cscniche" / "data"
SHARED = ROOT.parent / "shared" / "data"
GENES_TSV = SHARED / "reference" / "human_genes_hg38.tsv.gz"
GMT_CANDIDATES = [
    ROOT / "config" / "genesets" / "csc_signatures.gmt",
    ROOT / "src" / "cscniche" / "data" / "genesets" / "csc_signatures.gmt",
    ROOT / "src" / "cscniche" / "data" / "csc_signatures.gmt",
]
#: the default (tumour-intrinsic) gene sets: their genes are in every planted tumour too
GMT_DEFAULT = ROOT / "src" / "cscniche" / "data" / "genesets" / "csc_tumour_intrinsic.gmt"

#: approximate hg38 centromere midpoints (Mb) of the chromosomes whose arms are altered
CENTROMERE_MB = {"1": 123.4, "3": 90.9, "8": 45.2, "17": 25.1, "20": 28.1}
#: clonal arm-level copy-number profile: (chromosome, arm, expression factor)
ARMS = (("1", "q", 1.5), ("8", "q", 1.5), ("20", "q", 1.5), ("3", "p", 0.5), ("17", "p", 0.5))

PROGRAMS = {
    "IFN": ["STAT1", "STAT2", "IRF1", "IRF9", "ISG15", "IFIT1", "IFIT2", "IFIT3", "MX1", "OAS1", "IFI6", "IFITM1",
            "HLA-A", "HLA-B", "HLA-C", "B2M", "CD274", "TAP1", "PSMB9", "GBP1", "SOCS1", "CXCL10"],
    "IEG": ["FOS", "FOSB", "JUN", "JUNB", "JUND", "EGR1", "ATF3", "IER2", "IER3", "DUSP1", "ZFP36", "SOCS3",
            "HSPA1A", "HSPA1B", "KLF6", "NR4A1", "PPP1R15A"],
    "cycling": ["MKI67", "TOP2A", "CCNB1", "CDK1", "CCNA2", "BIRC5", "UBE2C", "CENPF", "TPX2", "NUSAP1", "PCNA",
                "MCM2", "TYMS", "RRM2", "HMGB2", "CDC20", "AURKA"],
}  # fmt: skip
#: the planted stem-like program: the four liver CSC markers and Wnt/Notch targets and stem factors
STEM_GENES = ["PROM1", "THY1", "CD44", "EPCAM", "AXIN2", "NKD1", "LEF1", "MYC", "LGR5", "SOX9", "HES1", "HEY1",
              "HEY2", "HEYL", "JAG1", "DLL1", "NOTCH1", "SOX2", "KLF4", "ALDH1A1", "BMI1", "NANOG"]  # fmt: skip
CELL_TYPES = {  # label: (compartment, share of cells, marker genes raised 8x)
    "Cancer Epithelial": ("malignant", 0.5, ["KRT8", "KRT18", "KRT19", "EPCAM", "CDH1", "KRT7", "CLDN4", "ELF3"]),
    "T cells": ("immune", 0.14, ["PTPRC", "CD3E", "CD3D", "CD2", "CD8A", "IL7R", "TRAC", "CD247"]),
    "Myeloid": ("immune", 0.1, ["PTPRC", "LYZ", "CD68", "CD14", "CSF1R", "C1QA", "C1QB", "FCGR3A", "CSF3R"]),
    "B cells": ("immune", 0.04, ["PTPRC", "MS4A1", "CD79A", "CD79B", "CD19", "BANK1"]),
    "CAFs": ("stromal", 0.14, ["COL1A1", "COL1A2", "DCN", "LUM", "PDGFRA", "FAP", "THY1", "COL3A1"]),
    "Endothelial": ("stromal", 0.08, ["PECAM1", "VWF", "CDH5", "CLDN5", "PLVAP", "KDR"]),
}


def _gmt_path() -> Path:
    for p in GMT_CANDIDATES:
        if p.exists():
            return p
    raise FileNotFoundError(f"csc_signatures.gmt not found in {[str(p) for p in GMT_CANDIDATES]}")


def read_gmt(path) -> dict[str, list[str]]:
    """GMT -> {name: genes} (a local reader so the generator needs no library import)."""
    sets = {}
    for line in Path(path).read_text().splitlines():
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 3 and not line.startswith("#"):
            sets[parts[0]] = list(dict.fromkeys(g for g in parts[2:] if g))
    return sets


def gene_table(path: Path = GENES_TSV) -> pd.DataFrame:
    """Protein-coding genes with hg38 positions on chr1-22 (symbol, chromosome, start, end), one row each."""
    with gzip.open(path, "rt") as fh:
        df = pd.read_csv(fh, sep="\t", dtype={"chromosome": str}, low_memory=False)
    df = df[
        df["gene_type"].eq("protein-coding")
        & df["start"].notna()
        & df["chromosome"].isin([str(i) for i in range(1, 23)])
    ]
    return df.drop_duplicates("symbol")[["symbol", "chromosome", "start", "end"]].reset_index(drop=True)


def planted_tumour(
    *,
    n_cells: int = 3000,
    n_genes: int = 4000,
    stem_fraction: float = 0.1,
    program_fraction: float = 0.1,
    stem_effect: float = 3.0,
    program_effect: float = 3.5,
    theta: float = 5.0,
    type_drift: float = 0.3,
    seed: int = 0,
) -> ad.AnnData:
    """A planted tumour (raw integer counts in ``X``, CSR float32). See the module docstring.

    Genes: every gene of the project's signatures, the programs, the stem program and the cell-type markers,
    filled up to ``n_genes`` with random protein-coding genes. Counts are gamma-Poisson (``theta``) around
    ``library size x type profile x copy-number factor x program factor``. Malignant cells are split at random
    into disjoint groups: stem (``stem_fraction``), IFN, IEG, cycling (``program_fraction`` each), none.
    ``type_drift``: SD of the per-gene log-normal factor that makes each cell type's profile its own (on top of
    its 8x markers); at 0.3 the library's CNV step (reference-range rule over 5 reference types) misses most
    malignant cells.
    """
    rng = np.random.default_rng(seed)
    table = gene_table()
    sigs = read_gmt(_gmt_path())
    if GMT_DEFAULT.exists():
        sigs = {**sigs, **read_gmt(GMT_DEFAULT)}
    wanted = list(dict.fromkeys(
        [g for s in sigs.values() for g in s] + [g for p in PROGRAMS.values() for g in p] + STEM_GENES
        + [g for _, _, m in CELL_TYPES.values() for g in m]
    ))  # fmt: skip
    known = set(table["symbol"])
    forced = [g for g in wanted if g in known]
    rest = table.loc[~table["symbol"].isin(forced), "symbol"].to_numpy()
    fill = rng.choice(rest, max(0, n_genes - len(forced)), replace=False)
    var = table.set_index("symbol").loc[forced + list(fill)].copy()
    var = var.loc[sorted(var.index, key=lambda g: (int(var.at[g, "chromosome"]), var.at[g, "start"]))]
    genes = var.index.to_numpy()
    gidx = pd.Index(genes)
    G = genes.size

    base = rng.lognormal(-1.0, 1.4, G)
    programme_genes = gidx.get_indexer([g for p in PROGRAMS.values() for g in p] + STEM_GENES)
    programme_genes = programme_genes[programme_genes >= 0]
    base[programme_genes] = np.maximum(base[programme_genes], rng.lognormal(0.0, 0.7, programme_genes.size))

    labels = list(CELL_TYPES)
    shares = np.array([CELL_TYPES[t][1] for t in labels])
    counts_per_type = rng.multinomial(n_cells, shares / shares.sum())
    cell_type = np.repeat(labels, counts_per_type)
    rng.shuffle(cell_type)
    malignant = cell_type == "Cancer Epithelial"

    profile = {}
    for t in labels:
        prof = base * rng.lognormal(0, type_drift, G)  # type-specific drift of every gene
        m = gidx.get_indexer([g for g in CELL_TYPES[t][2] if g in gidx])
        prof[m] *= 8.0
        profile[t] = prof / prof.sum()

    cnv = np.ones(G)
    for chrom, arm, factor in ARMS:
        on = var["chromosome"].to_numpy() == chrom
        cen = CENTROMERE_MB[chrom] * 1e6
        pos = var["start"].to_numpy(dtype=float)
        cnv[on & ((pos > cen) if arm == "q" else (pos < cen))] = factor

    program = np.full(n_cells, "reference", dtype=object)
    mal_idx = rng.permutation(np.flatnonzero(malignant))
    program[mal_idx] = "none"
    k = 0
    groups = [("stem", stem_fraction)] + [(p, program_fraction) for p in PROGRAMS]
    for name, frac in groups:
        n = int(round(frac * mal_idx.size))
        program[mal_idx[k : k + n]] = name
        k += n

    lib = np.where(malignant, rng.lognormal(np.log(5000), 0.45, n_cells), rng.lognormal(np.log(2500), 0.45, n_cells))
    mu = np.empty((n_cells, G), dtype=np.float64)
    for t in labels:
        rows = cell_type == t
        mu[rows] = np.outer(lib[rows], profile[t])
    mu[malignant] *= cnv
    effects = [("stem", STEM_GENES, stem_effect)] + [(p, g, program_effect) for p, g in PROGRAMS.items()]
    for name, genes_p, eff in effects:
        cols = gidx.get_indexer([g for g in genes_p if g in gidx])
        rows = np.flatnonzero(program == name)
        mu[np.ix_(rows, cols)] *= eff
    lam = rng.gamma(theta, mu / theta)
    X = sparse.csr_matrix(rng.poisson(lam).astype(np.float32))
    obs = pd.DataFrame(
        {
            "celltype_major": pd.Categorical(cell_type),
            "truth_malignant": malignant,
            "truth_stem": program == "stem",
            "truth_program": pd.Categorical(program),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    # positions under names the CNV step does not read (real data rarely carry them; the pipeline looks them up)
    v = pd.DataFrame({"hg38_chromosome": var["chromosome"].to_numpy(), "hg38_start": var["start"].to_numpy()},
                     index=genes)  # fmt: skip
    a = ad.AnnData(X, obs=obs, var=v)
    a.uns["planted"] = {
        "arms": [f"{c}{arm}x{f:g}" for c, arm, f in ARMS],
        "cnv_factor": cnv,
        "stem_genes": [g for g in STEM_GENES if g in gidx],
        "programs": {p: [g for g in gs if g in gidx] for p, gs in PROGRAMS.items()},
        "stem_effect": stem_effect,
        "program_effect": program_effect,
        "seed": seed,
    }
    return a


# ----------------------------------------------------------------------------------------------------------
# Everything that touches the library is below (the public steps with their parameter objects).


def _library_pipeline(
    adata: ad.AnnData, *, sample: str, n_random: int, seed: int, cnv: bool = True, scoring=None, csc=None
) -> ad.AnnData:
    """QC/normalise, embed, annotate from the author labels (default compartment rules), CNV (``cnv=False``:
    malignant = the author-labelled malignant compartment), score (default stemness settings but only the
    stemness method and no pseudobulk, for speed)."""
    import cscniche as cn

    a, _ = cn.preprocess.qc(adata.copy(), sample=sample)
    cn.preprocess.embed(a, embedding=cn.EmbeddingParams(umap=False), seed=seed)
    cn.preprocess.annotate(a, cell_type_key="celltype_major")
    cn.stemness.cnv(a, sample=sample, cnv=cn.CnvParams(enabled=cnv, gene_positions=str(GENES_TSV)), seed=seed)
    scoring = scoring or cn.ScoringParams(methods=("pearson",), pseudobulk_methods=())
    csc = csc or cn.CscParams(n_random_sets=n_random)
    cn.stemness.score(a, sample=sample, scoring=scoring, csc=csc, seed=seed)
    return a


def evaluate(
    adata: ad.AnnData,
    *,
    sample: str = "planted",
    n_random: int = 1000,
    seed: int = 0,
    alpha: float = 0.1,
    cnv=True,
    scoring=None,
    csc=None,
    verbose: bool = True,
):
    """Run the library on a planted tumour; print and return AUROC and the calls of every CSC definition.

    Returns a dict: malignant recovery (CNV step), stemness AUROC (truth_stem vs other malignant cells; each
    program vs unprogrammed cells), and per definition (``calibrated``, ``phenotype``, ``quantile``): n called,
    precision, recall, share of each program's cells called; plus the calibration summary (pooled null, sample-
    level test) and the covariate check of the summary.
    """
    from sklearn.metrics import roc_auc_score

    a = _library_pipeline(adata, sample=sample, n_random=n_random, seed=seed, cnv=cnv, scoring=scoring, csc=csc)
    truth_mal = a.obs["truth_malignant"].to_numpy(dtype=bool)
    mal = a.obs["malignant"].to_numpy(dtype=bool)
    out = {
        "n_cells": a.n_obs,
        "n_malignant_true": int(truth_mal.sum()),
        "n_malignant_called": int(mal.sum()),
        "malignant_f1": float(2 * (mal & truth_mal).sum() / (mal.sum() + truth_mal.sum())),
    }
    cnv_table = a.uns["cscniche"].get("cnv")
    if isinstance(cnv_table, pd.DataFrame) and "cnv_only_f1" in cnv_table:
        out["cnv_only_f1"] = float(cnv_table["cnv_only_f1"].iloc[0])
    stem = a.obs["truth_stem"].to_numpy(dtype=bool)
    prog = a.obs["truth_program"].astype(str).to_numpy()
    s = a.obs["stemness"].to_numpy(dtype=np.float64)
    out["auroc_stemness"] = float(roc_auc_score(stem[mal], s[mal])) if 0 < stem[mal].sum() < mal.sum() else np.nan
    for p in ["IFN", "IEG", "cycling"]:
        sel = mal & ((prog == p) | (prog == "none"))
        ok = 0 < (prog[sel] == p).sum() < sel.sum()
        out[f"auroc_{p}_vs_none"] = float(roc_auc_score(prog[sel] == p, s[sel])) if ok else np.nan
    for d in a.uns["cscniche"]["csc_definitions"]:
        c = a.obs[f"csc_{d}"].to_numpy(dtype=bool)
        r = {
            "n_called": int(c.sum()),
            "called_share_malignant": float(c[mal].mean()) if mal.any() else np.nan,
            "precision": float((c & stem).sum() / c.sum()) if c.sum() else np.nan,
            "recall": float(c[stem & mal].mean()) if (stem & mal).any() else np.nan,
        }
        for p in ["none", "IFN", "IEG", "cycling"]:
            sel = mal & (prog == p)
            r[f"called_share_{p}"] = float(c[sel].mean()) if sel.any() else np.nan
        out[d] = r
    out["calibration"] = dict(a.uns["cscniche"].get("calibration", {}))
    summ = a.uns["cscniche"]["stemness_summary"].iloc[0]
    out["covariate"] = {k: summ[k] for k in summ.index if k.startswith("covariate")}
    out["csc_phenotype"] = a.uns["cscniche"].get("csc_phenotype")
    out["adata"] = a
    if verbose:
        for k, v in out.items():
            if k != "adata":
                print(f"{k}: {v}")
    return out


if __name__ == "__main__":  # pragma: no cover
    import sys
    import time

    t0 = time.time()
    # python planted.py STEM_FRACTION SEED CNV(1|0) TYPE_DRIFT
    arg = sys.argv[1:] + [None] * 4
    tumour = planted_tumour(stem_fraction=float(arg[0] or 0.1), seed=int(arg[1] or 0), type_drift=float(arg[3] or 0.3))
    evaluate(tumour, cnv=(arg[2] or "1") == "1")
    print(f"{time.time() - t0:.1f} s")
