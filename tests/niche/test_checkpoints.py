"""Checkpoint table: planted immune-evasion changes recovered, missing genes handled."""

from __future__ import annotations

import logging

import numpy as np
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
    a.obs["stemness"] = csc + rng.normal(size=n)
    # tissue: CSC 100 apart, 5 niche macrophages within 0.5 of each; the rest among non-CSC far away
    xy = np.zeros((n, 2))
    xy[:20, 0] = np.arange(20) * 100.0
    xy[20:n_mal] = np.column_stack([10_000 + np.arange(180) * 3.0, np.zeros(180)])
    niche = np.flatnonzero(in_niche)
    xy[niche] = xy[niche % 20] + rng.uniform(-0.5, 0.5, (100, 2))
    out = np.flatnonzero(~in_niche & ~a.obs["malignant"].to_numpy())
    xy[out] = np.column_stack([10_000 + np.arange(100) * 3.0 + 1.0, np.full(100, 1.0)])
    a.obsm["spatial"] = xy
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
    assert set(df["neighbourhood"]) == {"spatial"}  # the knn (transcriptional) graph left niche_checkpoints
    assert set(df["definition"]) == {"primary"} and not df["sketch"].any()
    assert df.loc["PDCD1", "n_in_niche"] == 100 and df.loc["PDCD1", "n_elsewhere"] == 100
    assert df.loc["PDCD1", "log2fc_niche_vs_elsewhere"] > 1.5 and df.loc["PDCD1", "fdr"] < 1e-6
    assert abs(df.loc["HAVCR2", "log2fc_niche_vs_elsewhere"]) < 0.5 and df.loc["HAVCR2", "fdr"] > 0.05
    assert "HLA-A" in df.index  # found as the panel spelling HLA.A


def test_niche_checkpoints_without_immune_cells_say_so(tmp_path):
    a, _ = _tiny()
    a.obs["compartment"] = a.obs["compartment"].replace({"immune": "stromal"})
    df = cn.niche.niche_checkpoints(a, sample="s", genes=DATA / "checkpoints.tsv")
    assert df["note"].tolist() == ["no immune cells"]


def test_niche_checkpoints_of_dissociated_cells_is_a_note(tmp_path):
    a, _ = _tiny()
    del a.obsm["spatial"]
    df = cn.niche.niche_checkpoints(a, sample="s", genes=DATA / "checkpoints.tsv")
    assert len(df) == 1 and df["note"].iloc[0].startswith("no spatial coordinates")


def test_low_expression_genes_are_not_tested(tmp_path):
    """A gene detected in 1 of 20 CSC and 0 of 180 non-CSC cells (issue 17's CD96 case): fold change, no p."""
    import numpy as np

    a, _ = _tiny()
    counts = a.layers["counts"].toarray()
    counts[:, 1] = 0
    counts[0, 1] = 5  # HAVCR2 in one CSC only
    from scipy import sparse

    a.layers["counts"] = sparse.csr_matrix(counts)
    x = a.X.toarray()
    x[:, 1] = np.log1p(counts[:, 1] * 1e4 / counts.sum(axis=1))
    a.X = sparse.csr_matrix(x)
    t = tmp_path / "cp.tsv"
    pd.DataFrame({"gene": ["PDCD1", "HAVCR2"], "role": ["immune_receptor"] * 2}).to_csv(t, sep="\t", index=False)
    df = cn.niche.checkpoints(a, sample="s", genes=t, checkpoints=cn.CheckpointsParams())
    row = df[(df.definition == "primary") & (df.group == "CSC")].set_index("gene")
    assert np.isnan(row.loc["HAVCR2", "p"]) and row.loc["HAVCR2", "log2fc_csc_vs_noncsc"] > 3
    assert row.loc["HAVCR2", "note"].startswith("not tested: expressed in fewer than 10% or 3 cells")
    assert np.isfinite(row.loc["PDCD1", "p"]) and row.loc["PDCD1", "note"] == ""
    off = cn.niche.checkpoints(
        a, sample="s", genes=t, checkpoints=cn.CheckpointsParams(min_expr_frac=0, min_expr_cells=0)
    )
    assert np.isfinite(off[(off.definition == "primary") & (off.gene == "HAVCR2")]["p"]).all()


def test_definitions_and_continuous_rows(demo_defs):
    """Two CSC definitions side by side, and Spearman rho of stemness with each gene across malignant cells."""

    a = demo_defs.copy()
    df = cn.niche.checkpoints(a, sample="demo", genes=DATA / "checkpoints.tsv")
    assert set(df.definition) == {"calibrated", "quantile", "continuous"}
    q = df[(df.definition == "quantile") & (df.group == "CSC")].set_index("gene")
    assert q.loc["CD274", "n_cells"] == (a.obs["csc_quantile"]).sum()
    assert q.loc["CD274", "log2fc_csc_vs_noncsc"] > 0.8 and q.loc["CD274", "fdr"] < 1e-6
    c = df[df.definition == "continuous"].set_index("gene")
    assert (c["group"] == "malignant").all() and c["log2fc_csc_vs_noncsc"].isna().all()
    assert c.loc["CD274", "rho"] > 0.2 and c.loc["CD274", "fdr"] < 1e-6  # planted x3 in stem-like cells
    assert c.loc["HLA-B", "rho"] < -0.2 and c.loc["HLA-B", "fdr"] < 1e-6  # planted down
    assert abs(c.loc["PVR", "rho"]) < 0.1  # measured: planted 0.25-0.30, unplanted |rho| <= 0.07


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
    # the malignant and CSC flags define the groups of each definition (contract with the stemness step)
    a.obs["malignant"] = a.obs["group"].isin(["CSC", "nonCSC"]).to_numpy()
    a.obs["csc"] = (a.obs["group"] == "CSC").to_numpy()
    a.obs["compartment"] = a.obs["compartment"].where(a.obs["group"] != "Macrophage", "immune")
    df = cn.niche.checkpoints(a, sample="s", genes=DATA / "checkpoints.tsv")
    assert list(df.columns) == COLUMNS and COLUMNS[-1] == "note"
    df = df[df.definition == "primary"]
    assert len(df) > 0 and (df["note"] == note).all(), df["note"].unique()
    assert df["log2fc_csc_vs_noncsc"].notna().any() == (note == "")


def test_checkpoint_table_without_checkpoint_genes_has_the_columns(tmp_path):
    t = tmp_path / "cp.tsv"
    pd.DataFrame({"gene": ["NOT_A_GENE"], "role": ["x"]}).to_csv(t, sep="\t", index=False)
    a, _ = _tiny()
    df = cn.niche.checkpoints(a, sample="s", genes=t)
    assert df.empty and list(df.columns) == COLUMNS


def test_a_single_csc_is_never_tested(demo_processed):
    """One CSC against hundreds of others gave 10 genes at FDR < 0.1 on Moncada PDAC-A (1 calibrated CSC)."""
    import numpy as np

    a = demo_processed.copy()
    mal = np.flatnonzero(a.obs["malignant"].to_numpy(dtype=bool))
    one = np.zeros(a.n_obs, dtype=bool)
    one[mal[np.argmax(a.obs["stemness"].to_numpy()[mal])]] = True
    a.obs["csc_one"] = one
    a.uns["cscniche"] = {**a.uns["cscniche"], "csc_definitions": ["one"]}
    df = cn.niche.checkpoints(a, sample="demo", genes=DATA / "checkpoints.tsv")
    one_rows = df[df.definition == "one"]
    assert (one_rows[one_rows.group == "CSC"]["n_cells"] == 1).all()
    assert one_rows["p"].isna().all() and one_rows["fdr"].isna().all()
    assert one_rows["note"].str.contains("fewer than 3 CSC or non-CSC cells").all()


def test_checkpoint_tables_are_the_three_steps_in_one_read():
    # rule checkpoints writes all three from one read (issue 18): each equals its own function's table
    a, _ = _tiny()
    p = cn.CheckpointsParams(genes=str(DATA / "checkpoints.tsv"))
    both = cn.niche.checkpoint_tables(a, sample="s", checkpoints=p)
    assert set(both) == {"checkpoints", "pseudobulk", "niche"}
    pd.testing.assert_frame_equal(both["checkpoints"], cn.niche.checkpoints(a, sample="s", checkpoints=p))
    pd.testing.assert_frame_equal(both["pseudobulk"], cn.niche.checkpoint_pseudobulk(a, sample="s", genes=p.genes))
    pd.testing.assert_frame_equal(both["niche"], cn.niche.niche_checkpoints(a, sample="s", checkpoints=p))
    assert (both["niche"]["neighbourhood"] == "spatial").all() and len(both["checkpoints"]) > 0


def test_checkpoint_columns_are_the_whole_matrix_columns_without_copying_it():
    """_Columns slices only the checkpoint genes' columns (one pass, dense, same dtype), found by position in the
    whole matrix and under panel spellings; the tables read them instead of a CSC copy of the whole matrix."""
    from scipy import sparse

    from cscniche.niche._checkpoints import _by_column, _dense_col

    m = sparse.random(300, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    names = pd.Index([f"G{i}" for i in range(38)] + ["HLA.A", "CD274"])
    cols = _by_column(m, names, ["CD274", "HLA-A", "G3", "NOTHERE", "G3"])
    assert cols.values.shape == (300, 3) and cols.values.dtype == np.float32
    for i in (39, 38, 3):
        np.testing.assert_array_equal(_dense_col(cols, i), m.toarray()[:, i])
    dense = _by_column(m.toarray(), names, ["G5"])
    np.testing.assert_array_equal(_dense_col(dense, 5), m.toarray()[:, 5])
