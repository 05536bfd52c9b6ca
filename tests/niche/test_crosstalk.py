"""Ligand-receptor crosstalk through LIANA: planted CSC ligands found, checkpoint axes labelled, notes."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest

from cscniche.niche import _crosstalk as ct


@pytest.fixture(scope="module")
def demo_crosstalk(demo_processed):
    return ct.crosstalk(demo_processed, sample="demo", n_permutations=200, seed=0)


def test_columns_follow_the_contract(demo_crosstalk):
    table, diff = demo_crosstalk
    # the report (issue 9) plots these columns by name
    assert {"ligand", "receptor", "source", "target", "score", "p", "axis"} <= set(table.columns)
    assert list(table.columns) == ct.COLUMNS and list(diff.columns) == ct.DIFF_COLUMNS
    assert set(table["source"]) == {"CSC", "nonCSC"}
    assert {"Macrophage", "T_CD8", "NK", "MDSC_like"} <= set(table["target"])
    assert not set(table["target"]) & {"CSC", "nonCSC", "Fibroblast", "Endothelial"}


def test_every_checkpoint_axis_present_in_the_demo(demo_crosstalk):
    table, _ = demo_crosstalk
    # CD80/CD86 and MIF/CD74 are not in the demo's gene panel
    expected = {a["axis"] for a in ct.DEFAULT_AXES} - {"CD80/CTLA-4", "CD86/CTLA-4", "MIF/CD74"}
    assert expected <= set(table["axis"])
    pvr = table[table["axis"] == "PVR/TIGIT"]
    assert not pvr.empty and not pvr["in_consensus"].any()  # added to LIANA's resource for this run
    assert table.loc[table["axis"] == "PD-L1/PD-1", "in_consensus"].all()


def test_planted_csc_ligands_give_positive_differences(demo_crosstalk):
    """The demo plants CD274 x3, CD47 x2.5, CD200 x3 in stem-like cells; PVR, NECTIN2, LGALS9 are not planted."""
    _, diff = demo_crosstalk
    by = diff.groupby("ligand").agg(ligand_diff=("ligand_diff", "first"), fdr=("fdr", "min"))
    for up in ("CD274", "CD47", "CD200"):
        assert by.loc[up, "ligand_diff"] > 0.4 and by.loc[up, "fdr"] < 0.05, up
    smallest_planted = by.loc[["CD274", "CD47", "CD200"], "ligand_diff"].min()
    for flat in ("PVR", "NECTIN2", "LGALS9"):
        # planted genes take library share, so unplanted ones shift a little after normalisation: small, not zero
        assert abs(by.loc[flat, "ligand_diff"]) < min(0.2, smallest_planted / 4), flat


def test_one_hypothesis_per_ligand_receptor_receiver(demo_crosstalk):
    _, diff = demo_crosstalk
    key = ["definition", "ligand", "receptor", "target"]
    assert not diff.duplicated(key).any()
    np.testing.assert_allclose(diff["interaction_diff"], diff["ligand_diff"] * diff["receptor_mean_target"])
    np.testing.assert_allclose(diff["p"], np.maximum(diff["p_ligand"], diff["p_receptor"]))
    assert set(diff["definition"]) == {"primary"} and set(ct.DIFF_DESCRIPTIONS) <= set(diff.columns)


def test_cd47_found_against_sirpa_receivers_not_against_a_receiver_without_sirpa(demo_processed):
    """CD47 x2.5 planted in CSC (demo); SIRPA is expressed by macrophages and MDSC (demo) and removed here from
    T_CD8 cells: the CD47-SIRPA contrast is found towards macrophages and not towards T_CD8."""
    from scipy import sparse

    a = demo_processed.copy()
    t8 = np.flatnonzero(a.obs["group"].astype(str).to_numpy() == "T_CD8")
    j = a.var_names.get_loc("SIRPA")
    for layer in ("X", "counts"):
        m = sparse.lil_matrix(a.X if layer == "X" else a.layers["counts"])
        m[t8, j] = 0
        if layer == "X":
            a.X = sparse.csr_matrix(m)
        else:
            a.layers["counts"] = sparse.csr_matrix(m)
    _, diff = ct.crosstalk(a, sample="demo", n_permutations=200, seed=0)
    cd47 = diff[(diff.ligand == "CD47") & (diff.receptor == "SIRPA")].set_index("target")
    mac, t = cd47.loc["Macrophage"], cd47.loc["T_CD8"]
    assert mac["interaction_diff"] > 1.0 and mac["fdr"] < 0.05
    assert t["receptor_frac_target"] == 0 and t["interaction_diff"] == 0 and t["fdr"] > 0.5
    # the ligand part is the same for both receivers: the receiver decides
    assert mac["p_ligand"] == t["p_ligand"] < 0.05


def test_random_csc_labels_give_no_difference(demo_processed):
    """Unplanted: CSC labels drawn at random among malignant cells; no row reaches FDR < 0.05."""
    a = demo_processed.copy()
    group = a.obs["group"].astype(str).to_numpy()
    mal = np.flatnonzero(np.isin(group, ["CSC", "nonCSC"]))
    rng = np.random.default_rng(7)
    group[mal] = "nonCSC"
    group[rng.choice(mal, 120, replace=False)] = "CSC"
    a.obs["group"] = group
    _, diff = ct.crosstalk(a, sample="demo", n_permutations=200, seed=0)
    assert diff["ligand"].nunique() > 20 and (diff["fdr"] < 0.05).sum() == 0


def test_lr_means_difference_is_half_the_ligand_mean_difference(demo_processed, demo_crosstalk):
    """Cross-check against LIANA: its lr_means difference equals half our ligand-mean difference (tol 1e-5)."""
    table, diff = demo_crosstalk
    group = demo_processed.obs["group"].astype(str).to_numpy()
    masks = np.vstack([group == "CSC", group == "nonCSC"])
    ligands = ["CD274", "CD47", "HLA-E"]
    m = ct.ligand_means(demo_processed.X, ligands, demo_processed.var_names, masks)
    for j, lig in enumerate(ligands):
        got = diff.loc[diff["ligand"] == lig, "score_diff"].to_numpy()
        np.testing.assert_allclose(got, (m[0, j] - m[1, j]) / 2, atol=1e-5)
        w = table[table.ligand == lig].pivot_table(index=["receptor", "target"], columns="source", values="score")
        np.testing.assert_allclose((w["CSC"] - w["nonCSC"]).to_numpy(), (m[0, j] - m[1, j]) / 2, atol=1e-5)


def test_axis_matching_on_subunits():
    axes = ct.DEFAULT_AXES
    assert ct.axis_of("CD274", "PDCD1", axes) == "PD-L1/PD-1"
    assert ct.axis_of("HLA-E", "KLRC1_KLRD1", axes) == "HLA-E/NKG2A"
    assert ct.axis_of("MIF", "CD74_CXCR4", axes) == "MIF/CD74"
    assert ct.axis_of("HLA-E", "CD8A", axes) == ""
    assert ct.axis_of("CD274", "CD80", axes) == ""
    res, added = ct.resource_with_axes(axes)
    assert ("PVR", "TIGIT") in added and ("CD274", "PDCD1") not in added
    assert len(res) == 4620 + len(added)


def test_panel_spellings_are_renamed_for_the_resource():
    import anndata as ad

    a = ad.AnnData(np.zeros((2, 3), dtype=np.float32))
    a.var_names = ["HLA.E", "CD274", "KLRC1"]
    res = pd.DataFrame({"ligand": ["HLA-E", "CD274"], "receptor": ["KLRC1_KLRD1", "PDCD1"]})
    assert list(ct._resource_names(a, res)) == ["HLA-E", "CD274", "KLRC1"]


def test_no_immune_cells_gives_a_note(demo_processed):
    a = demo_processed.copy()
    a.obs["compartment"] = a.obs["compartment"].astype(str).replace({"immune": "other"})
    table, diff = ct.crosstalk(a, sample="demo", n_permutations=10)
    assert table["note"].tolist() == ["no immune cell type with at least 5 cells"]
    assert diff["note"].tolist() == table["note"].tolist()
    b = demo_processed.copy()
    b.obs["group"] = b.obs["group"].astype(str).replace({"CSC": "nonCSC"})
    table, _ = ct.crosstalk(b, sample="demo", n_permutations=10)
    assert table["note"].iloc[0].startswith("fewer than 5 CSC")


def test_fast_filter_resource_equals_lianas(demo_processed):
    """Our hashed filter keeps exactly LIANA's rows (same frame), on the exploded consensus resource."""
    from liana.method._pipe_utils import filter_resource as liana_filter
    from liana.resource._reassemble_complexes import _explode_complexes

    resource, _ = ct.resource_with_axes(ct.DEFAULT_AXES)
    exploded = _explode_complexes(resource)
    var = demo_processed.var_names
    ours, theirs = ct.filter_resource(exploded, var), liana_filter(exploded, var)
    assert 0 < len(ours) < len(exploded)  # the demo panel lacks most of the resource: the filter does work
    pd.testing.assert_frame_equal(ours, theirs)


def test_fast_permutation_cube_is_lianas_bit_for_bit(demo_processed):
    """Same permutations, same float32 summation order: the cube equals LIANA's exactly (tolerance 0)."""
    from liana.method._pipe_utils._get_mean_perms import _generate_perms_cube
    from scipy import sparse

    x = sparse.csr_matrix(demo_processed.X, dtype=np.float32)
    labels = demo_processed.obs["group"].astype(str).to_numpy()
    cats = sorted(set(labels))
    mask = np.stack([labels == c for c in cats], axis=1)
    ref = _generate_perms_cube(x, 70, mask, 3, np.mean, 1, False)
    got = ct.perms_cube(x, 70, mask, 3, chunk=16)  # chunks not dividing n_perms
    assert got.shape == ref.shape and np.array_equal(got, ref, equal_nan=True)


def test_crosstalk_is_unchanged_by_the_fast_paths(demo_processed):
    """LIANA patched (filter_resource, permutation cube) and unpatched give equal tables."""
    from unittest import mock

    fast = ct.crosstalk(demo_processed, sample="demo", n_permutations=100, seed=0)
    with mock.patch.object(ct, "liana_fast_paths", contextlib.nullcontext):
        slow = ct.crosstalk(demo_processed, sample="demo", n_permutations=100, seed=0)
    for f, s in zip(fast, slow, strict=True):
        pd.testing.assert_frame_equal(f, s)


def test_receiver_stats_match_scipy_binomtest(demo_processed):
    """Vectorised receptor statistics = per-pair sparse slices and scipy's binomtest (tolerance 1e-12)."""
    from scipy import sparse
    from scipy.stats import binomtest

    group = demo_processed.obs["group"].astype(str).to_numpy()
    receivers = [g for g in sorted(set(group)) if g not in ct.SENDERS][:4]
    receptors = ["PDCD1", "SIRPA", "KLRC1_KLRD1", "NOT_A_GENE"]
    stats = ct.receiver_stats(demo_processed.X, demo_processed.var_names, receptors, group, receivers, 0.1)
    x = sparse.csr_matrix(demo_processed.X)
    for r in receivers:
        rows = np.flatnonzero(group == r)
        assert np.isnan(stats[("NOT_A_GENE", r)]).all()
        for rc in receptors[:3]:
            sub = x[rows][:, demo_processed.var_names.get_indexer(rc.split("_"))]
            k = np.asarray((sub > 0).sum(axis=0)).ravel()
            p = max(binomtest(int(ki), rows.size, 0.1, alternative="greater").pvalue for ki in k)
            want = (np.asarray(sub.mean(axis=0)).ravel().min(), k.min() / rows.size, p)
            np.testing.assert_allclose(stats[(rc, r)], want, rtol=1e-12, atol=1e-12)
