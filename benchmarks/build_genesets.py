"""Build ``src/cscniche/data/genesets/csc_tumour_intrinsic.gmt`` from the shared references and two real tumours.

Reproducible: the output depends only on the lists below, ``msigdb_hallmark.gmt`` and ``cancersea_states.gmt``
(``../shared/data/reference``) and the author-labelled Wu CID4465 and Moncada PDAC-A matrices
(``../shared/data/tumour``). Every removal and its reason/number is in ``PROVENANCE.md``
(``--table`` prints the per-gene numbers pasted there).

Usage::

    .venv/bin/python benchmarks/build_genesets.py            # write the GMT
    .venv/bin/python benchmarks/build_genesets.py --check    # exit 1 if the shipped GMT differs
    .venv/bin/python benchmarks/build_genesets.py --table    # per-gene filter numbers (markdown)

Rules, applied in this order to every *index* set (CSC_MARKERS_LIVER is exempt from rule 1, see PROVENANCE):

1b. **immune / stromal identity** - immune/stromal markers of config/markers.tsv and haematopoietic-lineage
   genes (list below), whatever their expression here;
1. **non-tumour expression** - in Wu or Moncada (author labels), mean log-normalised expression
   (counts per 10,000, log1p) in immune or in stromal cells > 2 x that in cancer cells, *and* the gene is
   detected in >= 5 % and >= 5 cells of that immune/stromal group (so that a few stray UMIs, or one cell of
   Moncada's 16 stromal cells, do not decide);
2. **outcome genes** - checkpoint / antigen-presentation genes the pipeline reports (config/checkpoints.tsv
   at this commit, plus HLA-*, TAP2, TAPBP, the CD24-SIGLEC10, HLA-G and NT5E/CD73 axes of the notes) and
   generic IFN / JAK-STAT genes;
3. **covariate programmes** - dissociation / immediate-early genes (van den Brink et al. 2017, core list) and
   Tirosh et al. 2016 cell-cycle genes;
4. **ubiquitous** - detected in >= 85 % of cancer, immune and stromal cells of each tumour that has the gene
   (house-keeping, no contrast between cells);
5. **overlaps** - a gene kept by more than one index set stays in the first set in ``INDEX_ORDER``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "src/cscniche/data/genesets/csc_tumour_intrinsic.gmt"

# ---- author-label groups of the two real tumours (README of ../shared/data) ----
TUMOURS = {
    "wu": (
        "tumour/wu2021_tnbc_CID4465.h5ad",
        "celltype_major",
        {
            "cancer": ["Cancer Epithelial"],
            "immune": ["T-cells", "Myeloid", "B-cells", "Plasmablasts"],
            "stromal": ["CAFs", "PVL", "Endothelial"],
        },
    ),
    "moncada": (
        "tumour/moncada2020_pdac_a_sc.h5ad",
        "Cell",
        {
            "cancer": ["Cancer clone A", "Cancer clone B"],
            "immune": [
                "T cells & NK cells",
                "mDCs A",
                "mDCs B",
                "pDCs",
                "Macrophages A",
                "Macrophages B",
                "Monocytes",
                "Mast cells",
            ],
            "stromal": ["Endothelial cells", "Fibroblasts"],
        },
    ),
}
RATIO = 2.0
MIN_DETECT_OTHER = 0.05
MIN_CELLS_OTHER = 5
UBIQUITOUS = 0.85

# ---- curated lists ----
MARKERS_LIVER = ["PROM1", "THY1", "CD44", "EPCAM"]

# Wnt/beta-catenin target genes: (gene, citation). Hallmark WNT members are marked in PROVENANCE.
WNT_TARGETS = {
    "AXIN2": "Jho et al., Mol Cell Biol 2002; Lustig et al., Mol Cell Biol 2002; Yan et al., PNAS 2001",
    "NKD1": "Yan et al., PNAS 2001",
    "LGR5": "Barker et al., Nature 2007",
    "ASCL2": "van der Flier et al., Cell 2009",
    "RNF43": "Koo et al., Nature 2012; Hao et al., Nature 2012",
    "ZNRF3": "Hao et al., Nature 2012",
    "APCDD1": "Takahashi et al., Cancer Res 2002",
    "NOTUM": "Torisu et al., Cancer Sci 2008 (HCC)",
    "SP5": "Kennedy et al., PNAS 2016",
    "LEF1": "Hovanes et al., Nat Genet 2001",
    "TCF7": "Roose et al., Science 1999",
    "DKK1": "Niida et al., Oncogene 2004; Gonzalez-Sancho et al., Oncogene 2005",
    "DKK4": "Pendas-Franco et al., Oncogene 2008",
    "TBX3": "Renard et al., Oncogene 2007 (liver cancer)",
    "GLUL": "Cadoret et al., Oncogene 2002 (liver); Boyault et al., Hepatology 2007 (CTNNB1-mutated HCC)",
    "LECT2": "Ovejero et al., Hepatology 2004 (liver)",
    "RHBG": "Cadoret et al., Oncogene 2002 (liver)",
    "PPARD": "He et al., Cell 1999",
    "CCND2": "Hallmark WNT member; beta-catenin/TCF target (Kioussi et al., Cell 2002)",
}
# Hallmark WNT members left out as pathway components / ligands / not a beta-catenin readout
WNT_COMPONENTS_DROPPED = [
    "ADAM17", "AXIN1", "CSNK1E", "CTNNB1", "CUL1", "DLL1", "DVL2", "FRAT1", "FZD1", "FZD8", "GNAI1",
    "HDAC11", "HDAC2", "HDAC5", "JAG1", "JAG2", "KAT2A", "MAML1", "NCOR2", "NCSTN", "NOTCH1", "NOTCH4",
    "NUMB", "PSEN2", "PTCH1", "RBPJ", "SKP2", "TP53", "WNT1", "WNT5B", "WNT6",
]  # fmt: skip

NOTCH_TARGETS = {
    "HES1": "Jarriault et al., Nature 1995",
    "HES4": "Notch/RBPJ target (Iso et al., J Cell Physiol 2003, review of HES/HEY)",
    "HEY1": "Maier & Gessler, Biochem Biophys Res Commun 2000; Iso et al. 2003",
    "HEY2": "Maier & Gessler 2000; Iso et al. 2003",
    "HEYL": "Maier & Gessler 2000; Iso et al. 2003",
    "NRARP": "Krebs et al., Genes Dev 2001; Lamar et al., Genes Dev 2001",
    "DTX1": "Deftos et al., Immunity 1998",
    "NOTCH3": "Hallmark NOTCH member; Notch target in cancer lines (Weng et al., Mol Cell Biol 2003)",
    "CCND1": "Ronchini & Capobianco, Mol Cell Biol 2001",
    "SOX9": "Zong et al., Development 2009 (Notch target in liver/biliary progenitors)",
}
NOTCH_COMPONENTS_DROPPED = [
    "APH1A", "ARRB1", "CUL1", "DLL1", "DTX2", "DTX4", "FBXW11", "FZD1", "FZD5", "FZD7", "JAG1", "KAT2A",
    "LFNG", "MAML2", "NOTCH1", "NOTCH2", "PPARD", "PRKCA", "PSEN2", "PSENEN", "RBX1", "SAP30", "SKP1",
    "ST3GAL6", "TCF7L2", "WNT2", "WNT5A",
]  # fmt: skip

# IL6/JAK/STAT3: receptor-proximal signal transduction (components, not a readout) left out
IL6_COMPONENTS_DROPPED = ["STAT3", "TYK2", "PTPN1", "PTPN2", "PTPN11", "GRB2", "CBL", "STAM2", "PIK3R5", "HAX1"]

# outcome genes (rule 2)
CHECKPOINT = [
    "CD274", "PDCD1LG2", "CD47", "CD200", "HLA-E", "LGALS9", "PVR", "NECTIN2", "MIF", "CD276", "VTCN1",
    "CD80", "CD86", "HLA-A", "HLA-B", "HLA-C", "B2M", "TAP1", "PDCD1", "CTLA4", "LAG3", "HAVCR2", "TIGIT",
    "SIRPA", "KLRC1", "KLRD1", "CD200R1", "CD74", "BTLA", "CD96",
    # beyond config/checkpoints.tsv: other antigen-presentation genes and the axes of notes/science.md
    "TAP2", "TAPBP", "HLA-F", "HLA-G", "CD24", "SIGLEC10", "LILRB1", "NT5E", "ENTPD1", "IDO1",
]  # fmt: skip
IFN_JAK_STAT = [
    "STAT1", "STAT2", "IRF1", "IRF9", "SOCS1", "SOCS3", "IFNAR1", "IFNAR2", "IFNGR1", "IFNGR2", "JAK1",
    "JAK2", "TYK2", "CXCL9", "CXCL10", "CXCL11", "ISG15", "IFI6", "IFIT1", "IFIT3", "MX1", "GBP1", "PSMB8",
    "PSMB9",
]  # fmt: skip
# immune / stromal identity genes (rule 1b): the immune and stromal markers of config/markers.tsv at this commit,
# plus haematopoietic-lineage genes (leukocyte/platelet/erythroid identity, cytokines and cytokine receptors of
# leukocytes) that are too rarely detected in these two tumours for rule 1 to see them (issue 15 names them)
IMMUNE_STROMAL_MARKERS = [
    "CD3D", "CD3E", "CD4", "IL7R", "CCR7", "LTB", "CD8A", "CD8B", "GZMK", "CCL5", "FOXP3", "IL2RA", "CTLA4",
    "TNFRSF4", "BATF", "NKG7", "GNLY", "KLRD1", "KLRF1", "PRF1", "NCAM1", "MS4A1", "CD79A", "CD79B", "CD19",
    "BANK1", "JCHAIN", "MZB1", "IGHG1", "XBP1", "SDC1", "CD68", "CD163", "C1QA", "C1QB", "C1QC", "APOE",
    "MRC1", "CD14", "LYZ", "FCN1", "VCAN", "S100A12", "CLEC9A", "XCR1", "CD1C", "FCER1A", "LAMP3", "S100A8",
    "S100A9", "CSF3R", "FCGR3B", "CXCR2", "ARG1", "COL1A1", "COL1A2", "COL3A1", "DCN", "LUM", "ACTA2",
    "PDGFRB", "PECAM1", "VWF", "CDH5", "PLVAP", "KDR", "ENG",
]  # fmt: skip
HAEMATOPOIETIC = [
    "PTPRC", "DNTT", "PF4", "TNF", "CSF2", "IL9R", "EBI3", "IL1R2", "CRLF2", "IL3RA", "CSF2RA", "CSF2RB",
    "IL2RG", "IL12RB1", "IL18R1", "CCR1", "CD33", "ITGAM", "EVI2A", "IKZF1", "GFI1", "GATA1", "TAL1", "NFE2",
    "MYB", "CXCL13", "IL1B",
    # T-cell lineage transcription factors: TCF7 (TCF-1) and LEF1 mark naive and stem-like T cells, so a
    # stemness index holding them scores T-cell doublets and ambient T-cell RNA as stem-like
    "TCF7", "LEF1",
]  # fmt: skip
# targets too unspecific for a pathway readout
NONSPECIFIC = {"CCND1": "G1 cyclin induced by many mitogenic pathways (cycling-cell confounder), not Notch-specific"}
# covariate programmes (rule 3)
# core subset of the ~140 dissociation-induced genes of van den Brink et al., Nat Methods 2017 (human symbols)
DISSOCIATION_IEG = [
    "FOS", "FOSB", "FOSL2", "JUN", "JUNB", "JUND", "ATF3", "EGR1", "EGR2", "IER2", "IER3", "NR4A1", "DUSP1",
    "ZFP36", "ZFP36L1", "ZFP36L2", "KLF2", "KLF4", "KLF6", "BTG2", "PPP1R15A", "GADD45B", "CEBPB", "CEBPD",
    "SOCS3", "NFKBIA", "TNFAIP3", "MCL1", "CCN1", "MYC", "SRF", "RHOB", "IRF1", "HSPA1A", "HSPA1B",
    "HSPA8", "HSPB1", "HSPH1", "HSP90AA1", "HSP90AB1", "DNAJA1", "DNAJB1", "SQSTM1", "UBC", "H3-3B",
    "TRA2A", "MT2A",
]  # fmt: skip
# Tirosh et al., Science 2016 (Seurat cc.genes / scanpy regev_lab list; MLF1IP->CENPU, FAM64A->PIMREG, HN1->JPT1)
CELL_CYCLE_S = [
    "MCM5", "PCNA", "TYMS", "FEN1", "MCM2", "MCM4", "RRM1", "UNG", "GINS2", "MCM6", "CDCA7", "DTL", "PRIM1",
    "UHRF1", "CENPU", "HELLS", "RFC2", "RPA2", "NASP", "RAD51AP1", "GMNN", "WDR76", "SLBP", "CCNE2", "UBR7",
    "POLD3", "MSH2", "ATAD2", "RAD51", "RRM2", "CDC45", "CDC6", "EXO1", "TIPIN", "DSCC1", "BLM", "CASP8AP2",
    "USP1", "CLSPN", "POLA1", "CHAF1B", "BRIP1", "E2F8",
]  # fmt: skip
CELL_CYCLE_G2M = [
    "HMGB2", "CDK1", "NUSAP1", "UBE2C", "BIRC5", "TPX2", "TOP2A", "NDC80", "CKS2", "NUF2", "CKS1B", "MKI67",
    "TMPO", "CENPF", "TACC3", "PIMREG", "SMC4", "CCNB2", "CKAP2L", "CKAP2", "AURKB", "BUB1", "KIF11",
    "ANP32E", "TUBB4B", "GTSE1", "KIF20B", "HJURP", "CDCA3", "JPT1", "CDC20", "TTK", "CDC25C", "KIF2C",
    "RANGAP1", "NCAPD2", "DLGAP5", "CDCA2", "CDCA8", "ECT2", "KIF23", "HMMR", "AURKA", "PSRC1", "ANLN", "LBR",
    "CKAP5", "CENPE", "CTCF", "NEK2", "G2E3", "GAS2L3", "CBX5", "CENPA",
]  # fmt: skip
# previous symbols in the references / data -> the current HGNC symbol used in the lists above
ALIASES = {"H3F3B": "H3-3B", "CYR61": "CCN1", "MLF1IP": "CENPU", "FAM64A": "PIMREG", "HN1": "JPT1"}

INDEX_ORDER = ["CSC_MARKERS_LIVER", "WNT_TARGETS", "NOTCH_TARGETS", "IL6_STAT3_TUMOUR", "CANCERSEA_STEMNESS"]
DESCRIPTIONS = {
    "CSC_MARKERS_LIVER": "index; liver CSC surface markers CD133/PROM1, CD90/THY1, CD44, EpCAM "
    "(Ma 2007; Yang 2008; Yamashita 2009); not expression-filtered",
    "WNT_TARGETS": "index; beta-catenin/TCF target genes (literature, see PROVENANCE.md), tumour-intrinsic filtered",
    "NOTCH_TARGETS": "index; Notch/RBPJ target genes (literature), tumour-intrinsic filtered",
    "IL6_STAT3_TUMOUR": "index; MSigDB Hallmark IL6_JAK_STAT3_SIGNALING (Liberzon 2015) minus immune/stromal, "
    "IFN/JAK-STAT, checkpoint, IEG genes and signalling components",
    "CANCERSEA_STEMNESS": "index; CancerSEA Stemness (Yuan 2019) minus immune/stromal, outcome, IEG, "
    "cell-cycle, ubiquitous genes and genes of earlier sets",
    "DISSOCIATION_IEG": "covariate, not in index; dissociation-induced genes, core list (van den Brink 2017)",
    "CELL_CYCLE_S": "covariate, not in index; S phase (Tirosh et al., Science 2016)",
    "CELL_CYCLE_G2M": "covariate, not in index; G2/M phase (Tirosh et al., Science 2016)",
}


def read_gmt(path: Path) -> dict[str, list[str]]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 3:
            out[parts[0]] = [g for g in parts[2:] if g]
    return out


def expression_table(genes: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per tumour, per gene: mean log-normalised expression and detection in cancer/immune/stromal cells."""
    import anndata as ad
    from scipy import sparse

    res: dict[str, dict[str, dict[str, float]]] = {}
    for name, (rel, key, groups) in TUMOURS.items():
        a = ad.read_h5ad(SHARED / rel)
        x = sparse.csr_matrix(a.X, dtype=np.float64)
        lib = np.asarray(x.sum(axis=1)).ravel()
        lib[lib == 0] = 1
        names = {g: i for i, g in enumerate(a.var_names)}
        idx = [names[g] for g in genes if g in names]
        present = [g for g in genes if g in names]
        sub = x[:, idx].toarray() / lib[:, None] * 1e4
        logx = np.log1p(sub)
        lab = a.obs[key].astype(str).to_numpy()
        res[name] = {}
        for j, g in enumerate(present):
            row = {}
            for grp, labs in groups.items():
                m = np.isin(lab, labs)
                row[f"mean_{grp}"] = float(logx[m, j].mean())
                row[f"det_{grp}"] = float((sub[m, j] > 0).mean())
                row[f"ncells_{grp}"] = int((sub[m, j] > 0).sum())
            res[name][g] = row
    return res


def non_tumour(row: dict[str, float]) -> str | None:
    """'immune'/'stromal' when that group dominates the gene (rule 1), else None."""
    for grp in ("immune", "stromal"):
        if (
            row[f"mean_{grp}"] > RATIO * row["mean_cancer"]
            and row[f"det_{grp}"] >= MIN_DETECT_OTHER
            and row[f"ncells_{grp}"] >= MIN_CELLS_OTHER
        ):
            return grp
    return None


def build() -> tuple[dict[str, list[str]], list[tuple[str, str, str]], dict]:
    """Return (sets, removals [(set, gene, reason)], expression table)."""
    ref = SHARED / "reference"
    hallmark = read_gmt(ref / "msigdb_hallmark.gmt")
    cancersea = read_gmt(ref / "cancersea_states.gmt")

    def hm(name):
        return next(v for k, v in hallmark.items() if k.upper().endswith(name))

    il6 = hm("IL6_JAK_STAT3_SIGNALING")
    stem = next(v for k, v in cancersea.items() if k.lower() == "stemness")
    raw = {
        "CSC_MARKERS_LIVER": list(MARKERS_LIVER),
        "WNT_TARGETS": list(WNT_TARGETS),
        "NOTCH_TARGETS": list(NOTCH_TARGETS),
        "IL6_STAT3_TUMOUR": [g for g in il6],
        "CANCERSEA_STEMNESS": stem,
    }
    universe = sorted({g for v in raw.values() for g in v})
    expr = expression_table(universe)
    removals: list[tuple[str, str, str]] = []
    kept: dict[str, list[str]] = {}
    for s in INDEX_ORDER:
        keep = []
        for g in raw[s]:
            reason = None
            if s == "IL6_STAT3_TUMOUR" and g in IL6_COMPONENTS_DROPPED:
                reason = "signalling component (not a readout)"
            elif s != "CSC_MARKERS_LIVER" and g in MARKERS_LIVER:
                reason = "liver CSC marker: kept only in CSC_MARKERS_LIVER"
            elif g in NONSPECIFIC:
                reason = NONSPECIFIC[g]
            elif s != "CSC_MARKERS_LIVER" and (g in IMMUNE_STROMAL_MARKERS or g in HAEMATOPOIETIC):
                reason = "immune / stromal identity gene (markers.tsv or haematopoietic lineage)"
            elif g in CHECKPOINT:
                reason = "checkpoint / antigen-presentation outcome"
            elif g in IFN_JAK_STAT:
                reason = "generic IFN / JAK-STAT"
            elif ALIASES.get(g, g) in DISSOCIATION_IEG:
                reason = "dissociation / immediate-early (covariate)"
            elif ALIASES.get(g, g) in CELL_CYCLE_S or ALIASES.get(g, g) in CELL_CYCLE_G2M:
                reason = "cell cycle (covariate)"
            elif s != "CSC_MARKERS_LIVER":
                hits = [(t, non_tumour(expr[t][g])) for t in expr if g in expr[t]]
                hits = [(t, grp) for t, grp in hits if grp]
                if hits:
                    reason = "expressed mainly by " + ", ".join(f"{grp} cells in {t}" for t, grp in hits)
                elif all(g not in expr[t] for t in expr):
                    reason = "absent from both tumours' gene lists (cannot be checked)"
                elif all(
                    min(expr[t][g][f"det_{grp}"] for grp in ("cancer", "immune", "stromal")) >= UBIQUITOUS
                    for t in expr
                    if g in expr[t]
                ):
                    reason = f"ubiquitous (detected in >= {UBIQUITOUS:.0%} of every compartment, each tumour with it)"
            if reason:
                removals.append((s, g, reason))
            else:
                keep.append(g)
        kept[s] = keep
    # rule 5: overlaps; earlier set keeps the gene
    seen: dict[str, str] = {}
    for s in INDEX_ORDER:
        out = []
        for g in kept[s]:
            if g in seen:
                removals.append((s, g, f"overlap: kept in {seen[g]}"))
            else:
                seen[g] = s
                out.append(g)
        kept[s] = out
    kept["DISSOCIATION_IEG"] = list(DISSOCIATION_IEG)
    kept["CELL_CYCLE_S"] = list(CELL_CYCLE_S)
    kept["CELL_CYCLE_G2M"] = list(CELL_CYCLE_G2M)
    return kept, removals, expr


def render(sets: dict[str, list[str]]) -> str:
    return "".join(f"{s}\t{DESCRIPTIONS[s]}\t" + "\t".join(sets[s]) + "\n" for s in DESCRIPTIONS)


def table(removals, expr) -> str:
    lines = [
        "| set | gene | reason | wu cancer / immune / stromal mean (det %) | moncada cancer / immune / stromal mean (det %) |",
        "|---|---|---|---|---|",
    ]
    for s, g, r in removals:
        cells = []
        for t in ("wu", "moncada"):
            e = expr[t].get(g)
            cells.append(
                "absent"
                if e is None
                else " / ".join(
                    f"{e[f'mean_{c}']:.2f} ({100 * e[f'det_{c}']:.0f})" for c in ("cancer", "immune", "stromal")
                )
            )
        lines.append(f"| {s} | {g} | {r} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with the shipped GMT; exit 1 on difference")
    p.add_argument("--table", action="store_true", help="print the removal table (markdown)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    sets, removals, expr = build()
    text = render(sets)
    if args.table:
        sys.stdout.write(table(removals, expr))
        for s in sets:
            print(f"{s}: {len(sets[s])}")
        e = {t: {g: expr[t][g] for g in MARKERS_LIVER if g in expr[t]} for t in expr}
        for t in e:
            for g, r in e[t].items():
                print(t, g, {k: round(v, 3) for k, v in r.items()})
        return 0
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print("GMT reproduced" if same else f"GMT differs from {args.out}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}: " + ", ".join(f"{s} {len(v)}" for s, v in sets.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
