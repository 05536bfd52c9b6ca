"""Checkpoint table: planted immune-evasion changes recovered, missing genes handled."""

from __future__ import annotations

import logging

import pandas as pd
from conftest import ROOT

from cscniche import stages
from cscniche.checkpoints import COLUMNS


def test_planted_checkpoint_changes_recovered(demo_processed):
    df = stages.checkpoints(demo_processed, sample="demo", genes=ROOT / "config/checkpoints.tsv")
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
        df = stages.checkpoints(demo_processed, sample="demo", genes=t)
    assert set(df["gene"]) == {"CD274"}
    assert "NOT_A_GENE" in caplog.text
