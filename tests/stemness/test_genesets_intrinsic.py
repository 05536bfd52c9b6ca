"""The tumour-intrinsic CSC signature file: disjoint index sets, no outcome/IEG/cycle/immune genes, provenance."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

from conftest import shared_file

ROOT = Path(__file__).resolve().parents[2]
GMT = ROOT / "src/cscniche/data/genesets/csc_tumour_intrinsic.gmt"
PROVENANCE = ROOT / "src/cscniche/data/genesets/PROVENANCE.md"
BUILD = ROOT / "benchmarks/build_genesets.py"

INDEX = ["CSC_MARKERS_LIVER", "WNT_TARGETS", "NOTCH_TARGETS", "IL6_STAT3_TUMOUR", "CANCERSEA_STEMNESS"]
COVARIATE = ["DISSOCIATION_IEG", "CELL_CYCLE_S", "CELL_CYCLE_G2M"]

# outcome genes the pipeline reports (config/checkpoints.tsv at the time of writing) and IFN/JAK-STAT genes
CHECKPOINT = {
    "CD274", "PDCD1LG2", "CD47", "CD200", "HLA-E", "LGALS9", "PVR", "NECTIN2", "MIF", "CD276", "VTCN1", "CD80",
    "CD86", "HLA-A", "HLA-B", "HLA-C", "B2M", "TAP1", "TAP2", "PDCD1", "CTLA4", "LAG3", "HAVCR2", "TIGIT",
    "SIRPA", "KLRC1", "KLRD1", "CD200R1", "CD74", "BTLA", "CD96", "CD24", "NT5E", "HLA-G",
}  # fmt: skip
IFN = {"STAT1", "STAT2", "IRF1", "IRF9", "SOCS1", "SOCS3", "IFNGR1", "IFNGR2", "IFNAR1", "TYK2", "CXCL9", "CXCL10"}
IEG_CORE = {"FOS", "FOSB", "JUN", "JUNB", "JUND", "EGR1", "ATF3", "IER2", "IER3", "HSPA1A", "HSPA1B", "DUSP1", "ZFP36"}
# immune-cell genes of the Hallmark IL6_JAK_STAT3 set named in issue 15
IMMUNE_NAMED = {"CD14", "CSF3R", "CXCL9", "CXCL10", "CXCL11", "CXCL13", "IL2RA", "IL2RG", "LTB", "PF4", "DNTT", "TNF", "IL1B"}  # fmt: skip


def read_gmt(path: Path) -> dict[str, tuple[str, list[str]]]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        out[parts[0]] = (parts[1], [g for g in parts[2:] if g])
    return out


SETS = read_gmt(GMT)


def _config_table(name: str) -> Path | None:
    """A config table at its old place (config/) or its new one (src/cscniche/data/)."""
    for p in (ROOT / "config" / name, ROOT / "src/cscniche/data" / name):
        if p.exists():
            return p
    return None


def _index_genes() -> dict[str, str]:
    return {g: s for s in INDEX for g in SETS[s][1]}


def test_sets_and_roles():
    assert list(SETS) == INDEX + COVARIATE
    for s in INDEX:
        assert SETS[s][0].startswith("index;"), s
    for s in COVARIATE:
        assert SETS[s][0].startswith("covariate"), s
    sizes = {s: len(SETS[s][1]) for s in SETS}
    assert sizes == {
        "CSC_MARKERS_LIVER": 4,
        "WNT_TARGETS": 13,
        "NOTCH_TARGETS": 8,
        "IL6_STAT3_TUMOUR": 23,
        "CANCERSEA_STEMNESS": 106,
        "DISSOCIATION_IEG": 47,
        "CELL_CYCLE_S": 43,
        "CELL_CYCLE_G2M": 54,
    }
    for s, (_, genes) in SETS.items():
        assert len(genes) == len(set(genes)), f"{s} lists a gene twice"


def test_no_gene_in_two_index_sets():
    seen: dict[str, str] = {}
    for s in INDEX:
        for g in SETS[s][1]:
            assert g not in seen, f"{g} in {seen[g]} and {s}"
            seen[g] = s


def test_markers_form_their_own_set_and_cd44_only_there():
    assert SETS["CSC_MARKERS_LIVER"][1] == ["PROM1", "THY1", "CD44", "EPCAM"]
    holders = [s for s in SETS if "CD44" in SETS[s][1]]
    assert holders == ["CSC_MARKERS_LIVER"]


def test_no_outcome_ieg_cycle_or_immune_gene_in_index():
    index = _index_genes()
    covariate = set().union(*(SETS[s][1] for s in COVARIATE))
    bad = {g: index[g] for g in index if g in covariate}
    assert not bad, f"covariate (IEG / cell-cycle) genes in the index: {bad}"
    forbidden = CHECKPOINT | IFN | IEG_CORE | IMMUNE_NAMED | {"MYC", "H3F3B", "H3-3B", "MLF1IP", "CDCA7"}
    forbidden |= {g for g in index if g.startswith("HLA-")}
    cp = _config_table("checkpoints.tsv")
    if cp is not None:  # whatever the pipeline reports today
        forbidden |= {
            line.split("\t")[0] for line in cp.read_text().splitlines()[1:] if line and not line.startswith("#")
        }
    mk = _config_table("markers.tsv")
    if mk is not None:  # immune and stromal marker genes of the marker table
        for line in mk.read_text().splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] in ("immune", "stromal"):
                forbidden |= {g.strip() for g in parts[2].split(",")}
    bad = {g: index[g] for g in index if g in forbidden}
    assert not bad, f"outcome / IEG / cycle / immune genes in the index: {bad}"


def test_covariates_hold_the_programmes():
    assert IEG_CORE <= set(SETS["DISSOCIATION_IEG"][1])
    assert {"PCNA", "MCM2", "CENPU", "E2F8"} <= set(SETS["CELL_CYCLE_S"][1])
    assert {"MKI67", "TOP2A", "CDK1", "PIMREG", "JPT1", "CENPA"} <= set(SETS["CELL_CYCLE_G2M"][1])
    assert not set(SETS["CELL_CYCLE_S"][1]) & set(SETS["CELL_CYCLE_G2M"][1])


def test_pathway_sets_hold_only_cited_targets():
    sys.path.insert(0, str(BUILD.parent))
    try:
        import build_genesets as b
    finally:
        sys.path.remove(str(BUILD.parent))
    assert set(SETS["WNT_TARGETS"][1]) <= set(b.WNT_TARGETS)
    assert set(SETS["NOTCH_TARGETS"][1]) <= set(b.NOTCH_TARGETS)
    text = PROVENANCE.read_text()
    for s in ("WNT_TARGETS", "NOTCH_TARGETS"):
        for g in SETS[s][1]:
            assert f"| {g} |" in text or f" {g}," in text or f"| {g}, " in text, f"{g} has no provenance row"
    # components of the Hallmark lists are not used as readouts
    for g in ("CTNNB1", "FZD1", "WNT1", "NOTCH1", "JAG1", "PSEN2", "RBPJ", "STAT3"):
        assert g not in _index_genes()


def test_subsets_of_stated_references():
    hallmark = {k.upper(): v for k, (_, v) in read_gmt(shared_file("reference/msigdb_hallmark.gmt")).items()}
    cancersea = {k.lower(): v for k, (_, v) in read_gmt(shared_file("reference/cancersea_states.gmt")).items()}
    il6 = next(v for k, v in hallmark.items() if k.endswith("IL6_JAK_STAT3_SIGNALING"))
    assert set(SETS["IL6_STAT3_TUMOUR"][1]) <= set(il6)
    assert set(SETS["CANCERSEA_STEMNESS"][1]) <= set(cancersea["stemness"])
    wnt = next(v for k, v in hallmark.items() if k.endswith("WNT_BETA-CATENIN_SIGNALING"))
    notch = next(v for k, v in hallmark.items() if k.endswith("NOTCH_SIGNALING"))
    # the Hallmark members PROVENANCE names for the target sets are Hallmark members indeed
    assert {"AXIN2", "NKD1", "DKK1", "DKK4", "HEY1", "HEY2"} <= set(wnt)
    assert {"HES1", "HEYL", "DTX1"} <= set(notch)
    # every symbol is a human gene of org.Hs.eg.db, except CancerSEA's own old symbols taken verbatim
    with gzip.open(shared_file("reference/human_genes_hg38.tsv.gz"), "rt") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = header.index("symbol")
        symbols = {line.split("\t")[col] for line in fh}
    unknown = {g for s in SETS for g in SETS[s][1] if g not in symbols}
    assert unknown <= set(cancersea["stemness"]), unknown


def test_build_script_reproduces_the_gmt():
    shared_file("tumour/wu2021_tnbc_CID4465.h5ad")
    shared_file("tumour/moncada2020_pdac_a_sc.h5ad")
    shared_file("reference/msigdb_hallmark.gmt")
    r = subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "GMT reproduced" in r.stdout


PANELS = ROOT / "src/cscniche/data/marker_panels.tsv"


def test_marker_panels():
    import pandas as pd

    d = pd.read_csv(PANELS, sep="\t", comment="#", dtype=str)
    assert list(d.columns) == ["panel", "tumour_type", "default_panel", "phenotype", "kind", "marker", "gate", "source"]
    assert not d.isna().any().any()
    assert set(d["gate"]) <= {"+", "-"}
    assert set(d["kind"]) <= {"single", "combination", "combination_any"}
    assert set(d.loc[d["default_panel"] == "yes", "panel"]) == {"liver"}
    for (_, pheno), g in d.groupby(["panel", "phenotype"]):
        if g["kind"].iloc[0] != "combination_any":  # the name is the gate string, e.g. CD44+CD24-
            assert pheno == "".join(g["marker"] + g["gate"]), pheno
        assert (g["kind"] == "single").all() == (len(g) == 1), pheno
    liver = d[d["panel"] == "liver"]
    singles = set(liver.loc[liver["kind"] == "single", "phenotype"])
    assert singles == {"PROM1+", "THY1+", "CD44+", "EPCAM+"}
    assert {"CD44+THY1+", "EPCAM+PROM1+"} <= set(liver["phenotype"])
    breast = set(d.loc[d["panel"] == "breast", "phenotype"])
    assert {"CD44+CD24-", "ALDH1A1+"} <= breast
    assert {"liver", "breast", "pancreas", "lung", "ovarian"} <= set(d["panel"])
    for key in ("Yamashita", "Ma S", "Yang ZF", "Al-Hajj", "Ginestier"):
        assert d["source"].str.contains(key).any(), key
    with gzip.open(shared_file("reference/human_genes_hg38.tsv.gz"), "rt") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = header.index("symbol")
        symbols = {line.split("\t")[col] for line in fh}
    assert set(d["marker"]) <= symbols


def test_provenance_lists_every_removal_with_its_numbers():
    shared_file("tumour/wu2021_tnbc_CID4465.h5ad")
    shared_file("tumour/moncada2020_pdac_a_sc.h5ad")
    r = subprocess.run([sys.executable, str(BUILD), "--table"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 132  # header + one row per removal
    text = PROVENANCE.read_text()
    missing = [row for row in rows if row not in text]
    assert not missing, missing[:5]
