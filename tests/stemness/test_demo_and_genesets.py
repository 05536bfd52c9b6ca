"""The demo generator is deterministic; the shipped gene sets equal the published reference."""

from __future__ import annotations

import numpy as np
from conftest import DATA, shared_file

from cscniche.demo import PLANTED_STEM, make_demo
from cscniche.stemness._score import read_gmt


def test_demo_is_deterministic_and_seeded():
    a, b, c = make_demo(seed=5), make_demo(seed=5), make_demo(seed=6)
    assert (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(a.obsm["spatial"], b.obsm["spatial"])
    assert (a.X != c.X).nnz > 0
    assert {"truth_cell_type", "truth_compartment", "truth_stem"} <= set(a.obs.columns)
    assert 0.1 < a.obs["truth_stem"][a.obs["truth_cell_type"] == "Malignant"].mean() < 0.2
    assert np.all(a.X.data == np.round(a.X.data))


def test_planted_genes_are_raised_in_stem_cells():
    a = make_demo(seed=0)
    mal = (a.obs["truth_cell_type"] == "Malignant").to_numpy()
    stem = a.obs["truth_stem"].to_numpy()
    x = a[:, PLANTED_STEM].X.toarray() / np.asarray(a.X.sum(axis=1))
    assert np.all(x[stem].mean(axis=0) > 2 * x[mal & ~stem].mean(axis=0))


def test_hallmark_sets_match_msigdb_reference():
    ref = read_gmt(shared_file("reference/msigdb_hallmark.gmt"))
    ours = read_gmt(DATA / "genesets/csc_signatures.gmt")
    pairs = {
        "WNT_BETA_CATENIN": "Hallmark_WNT_beta-catenin_signaling",
        "NOTCH": "Hallmark_Notch_signaling",
        "IL6_JAK_STAT3": "Hallmark_IL6_JAK_STAT3_signaling",
    }
    for mine, theirs in pairs.items():
        assert sorted(ours[mine]) == sorted(ref[theirs]), mine
    assert len(ours["WNT_BETA_CATENIN"]) == 42 and len(ours["NOTCH"]) == 32 and len(ours["IL6_JAK_STAT3"]) == 87
