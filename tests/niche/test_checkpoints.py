"""Checkpoint table: planted immune-evasion changes recovered, missing genes handled."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from conftest import DATA

import cscniche as cn
from cscniche.niche._checkpoints import COLUMNS


def test_planted_checkpoint_changes_recovered(demo_processed):
    df = cn.niche.checkpoints(demo_processed, sample="demo", genes=DATA / "checkpoints.tsv")
    assert list(df.columns) == COLUMNS
    per_gene = df.drop_duplicates("gene").set_index("gene")
    for up in ("CD274", "CD47", "CD200"):
        assert per_gene.loc[up, "log2fc_csc_vs_noncsc"] > 0.8 and per_gene.loc[up, "fdr"] < 1e-6, up
    for down in ("HLA-A", "HLA-B", "HLA-C", "B2M"):
        assert per_gene.loc[down, "log2fc_csc_vs_noncsc"] < -0.8 and per_gene.loc[down, "fdr"] < 1e-6, down
    # unplanted genes: no large change
    for flat in ("PVR", "CD276", "HLA-E"):
        assert abs(per_gene.loc[flat, "log2fc_csc_vs_noncsc"]) < 0.5, flat
    groups = set(df["group"])
    assert {"CSC", "nonCSC", "Macrophage", "T_CD8"} <= groups
    frac = df[(df.gene == "PDCD1") & (df.group == "T_CD8")]["frac_expr"].iloc[0]
    assert frac > 0.5


def test_missing_checkpoint_genes_are_warned_and_skipped(demo_processed, tmp_path, caplog):
    t = tmp_path / "cp.tsv"
    pd.DataFrame({"gene": ["CD274", "NOT_A_GENE"], "role": ["tumour_ligand", "x"]}).to_csv(t, sep="\t", index=False)
    with caplog.at_level(logging.WARNING):
        df = cn.niche.checkpoints(demo_processed, sample="demo", genes=t)
    assert set(df["gene"]) == {"CD274"}
    assert "NOT_A_GENE" in caplog.text


def _tiny(seed=0):
    """200 malignant (20 CSC) + 200 macrophages; 100 macrophages next to CSC with 5x PDCD1 (planted)."""
    import anndata as ad
    import numpy as np
    import scanpy as sc
    from scipy import sparse

    rng = np.random.default_rng(seed)
    genes = ["PDCD1", "HAVCR2", "CD274", "HLA.A", "B2M"] + [f"g{i}" for i in range(45)]
    n_mal, n_mac = 200, 200
    n = n_mal + n_mac
    lam = np.full((n, len(genes)), 2.0)
    in_niche = np.zeros(n, dtype=bool)
    in_niche[n_mal : n_mal + 100] = True
    lam[in_niche, 0] *= 5  # PDCD1 up in niche macrophages; HAVCR2 unchanged
    counts = rng.poisson(lam).astype(np.float32)
    a = ad.AnnData(sparse.csr_matrix(counts))
    a.var_names = genes
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    csc = np.zeros(n, dtype=bool)
    csc[:20] = True
    a.obs["csc"] = csc
    a.obs["malignant"] = np.arange(n) < n_mal
    a.obs["compartment"] = np.where(a.obs["malignant"], "malignant", "immune")
    a.obs["cell_type"] = np.where(a.obs["malignant"], "Malignant", "Macrophage")
    a.obs["group"] = np.where(csc, "CSC", np.where(a.obs["malignant"], "nonCSC", "Macrophage"))
    # kNN graph: the 100 niche macrophages each neighbour a CSC, the others neighbour non-CSC cells
    rows = list(range(n_mal, n))
    cols = [int(i % 20) if in_niche[i] else 20 + int(i % 180) for i in rows]
    a.obsp["distances"] = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return a, in_niche


def test_niche_checkpoints_find_planted_immune_change(tmp_path):
    t = tmp_path / "cp.tsv"
    pd.DataFrame(
        {"gene": ["PDCD1", "HAVCR2", "HLA-A"], "role": ["immune_receptor"] * 2 + ["antigen_presentation"]}
    ).to_csv(t, sep="\t", index=False)
    a, _ = _tiny()
    df = cn.niche.niche_checkpoints(a, sample="s", genes=t).set_index("gene")
    assert set(df["neighbourhood"]) == {"knn"}
    assert df.loc["PDCD1", "n_in_niche"] == 100 and df.loc["PDCD1", "n_elsewhere"] == 100
    assert df.loc["PDCD1", "log2fc_niche_vs_elsewhere"] > 1.5 and df.loc["PDCD1", "fdr"] < 1e-6
    assert abs(df.loc["HAVCR2", "log2fc_niche_vs_elsewhere"]) < 0.5 and df.loc["HAVCR2", "fdr"] > 0.05
    assert "HLA-A" in df.index  # found as the panel spelling HLA.A


def test_niche_checkpoints_without_immune_cells_say_so(tmp_path):
    a, _ = _tiny()
    a.obs["compartment"] = a.obs["compartment"].replace({"immune": "stromal"})
    df = cn.niche.niche_checkpoints(a, sample="s", genes=DATA / "checkpoints.tsv")
    assert df["note"].tolist() == ["no immune cells"]


def test_pseudobulk_sums_raw_counts():
    import numpy as np

    a, _ = _tiny()
    df = cn.niche.checkpoint_pseudobulk(a, sample="s", genes=DATA / "checkpoints.tsv").set_index(["group", "gene"])
    counts = a.layers["counts"].toarray()
    csc = a.obs["group"].to_numpy() == "CSC"
    assert df.loc[("CSC", "PDCD1"), "counts"] == counts[csc, 0].sum()
    assert df.loc[("CSC", "PDCD1"), "library_size"] == counts[csc].sum()
    assert df.loc[("CSC", "HLA-A"), "counts"] == counts[csc, 3].sum()
    assert set(df.index.get_level_values("group")) == {"CSC", "nonCSC", "Macrophage"}
    assert np.isfinite(df["counts"]).all()


def test_checkpoint_table_finds_dotted_hla_names():
    a, _ = _tiny()
    df = cn.niche.checkpoints(a, sample="s", genes=DATA / "checkpoints.tsv")
    assert {"HLA-A", "B2M", "CD274", "PDCD1"} <= set(df["gene"])


@pytest.mark.parametrize(
    ("groups", "note"),
    [
        ({}, ""),
        ({"CSC": "Macrophage", "nonCSC": "Macrophage"}, "no malignant cells"),  # no malignant cell left
        ({"CSC": "nonCSC"}, "no CSC"),
        ({"nonCSC": "CSC"}, "no non-CSC malignant cells"),
    ],
)
def test_checkpoint_table_has_the_same_columns_in_every_case(groups, note):
    """checkpoints.tsv: the columns COLUMNS (note last) whether or not the sample has CSC / malignant cells."""
    a, _ = _tiny()
    for old, new in groups.items():
        a.obs["group"] = a.obs["group"].replace(old, new)
    a.obs["compartment"] = a.obs["compartment"].where(a.obs["group"] != "Macrophage", "immune")
    df = cn.niche.checkpoints(a, sample="s", genes=DATA / "checkpoints.tsv")
    assert list(df.columns) == COLUMNS and COLUMNS[-1] == "note"
    assert len(df) > 0 and (df["note"] == note).all(), df["note"].unique()
    assert df["log2fc_csc_vs_noncsc"].notna().any() == (note == "")


def test_checkpoint_table_without_checkpoint_genes_has_the_columns(tmp_path):
    t = tmp_path / "cp.tsv"
    pd.DataFrame({"gene": ["NOT_A_GENE"], "role": ["x"]}).to_csv(t, sep="\t", index=False)
    a, _ = _tiny()
    df = cn.niche.checkpoints(a, sample="s", genes=t)
    assert df.empty and list(df.columns) == COLUMNS
