"""The spatial (field-shift) null of cscniche.niche.spatial_null against the label permutation (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import benchmark_module, shared_file

_bench = benchmark_module("validate_spatial_null")
_sn = _bench._sn
COLUMNS, ShiftField, spatial_neighbour_enrichment = _sn.COLUMNS, _sn.ShiftField, _sn.spatial_neighbour_enrichment


@pytest.fixture(scope="module")
def sim():
    """The simulation helpers of benchmarks/validate_spatial_null.py."""
    return _bench


def _run(sim, i, size, n_patches, strength=0.0, null="spatial_shift", n_perm=199):
    xy, types, csc = sim.sim_slide(i, size, n_patches, strength)
    return spatial_neighbour_enrichment(
        xy, types, sim.compartments(types), csc, null=null, n_permutations=n_perm, seed=i
    )


def test_columns_and_determinism(sim):
    a = _run(sim, 3, 150, 1)
    b = _run(sim, 3, 150, 1)
    assert list(a.columns) == COLUMNS
    assert sorted(a.immune_type) == sorted(sim.IMMUNE)
    assert (a["null"] == "spatial_shift").all() and (a.n_permutations == 199).all()
    pd.testing.assert_frame_equal(a, b)
    xy, types, csc = sim.sim_slide(3, 150, 1, 0.0)
    c = spatial_neighbour_enrichment(xy, types, sim.compartments(types), csc, n_permutations=199, seed=4)
    assert not np.allclose(a.null_mean_difference, c.null_mean_difference)  # the seed matters
    assert np.allclose(a.difference, c.difference)  # the observation does not
    assert ((a.p > 0) & (a.p <= 1)).all() and (a.n_csc == 150).all()


def test_notes_and_bad_null(sim):
    xy, types, csc = sim.sim_slide(0, 50, 1, 0.0)
    comp = sim.compartments(types)
    df = spatial_neighbour_enrichment(xy, types, comp, np.zeros(len(xy), bool), n_permutations=9)
    assert df.note.tolist() == ["no CSC"]
    df = spatial_neighbour_enrichment(xy, types, np.where(comp == "immune", "stromal", comp), csc, n_permutations=9)
    assert df.note.tolist() == ["no immune cells"]
    with pytest.raises(ValueError, match="null must be one of"):
        spatial_neighbour_enrichment(xy, types, comp, csc, null="toroidal")


def test_rasterised_field_reproduces_labels(sim):
    xy, types, csc = sim.sim_slide(5, 150, 3, 0.0)
    mal = types == "Malignant"
    assert ShiftField(xy[mal], csc[mal]).identity_agreement(csc[mal]) >= 0.99


def test_patchy_null_spatial_shift_calibrated_label_permutation_not(sim):
    """60 null slides (CSC 150 cells in 1 or 3 patches, immune patches independent), 4 immune types each."""
    res = {null: [] for null in ("spatial_shift", "label_permutation")}
    for i in range(60):
        for null in res:
            res[null].append(_run(sim, 1000 + i, 150, (1, 3)[i % 2], null=null, n_perm=99).p.to_numpy())
    fp = {null: float(np.mean(np.concatenate(v) < 0.05)) for null, v in res.items()}
    print("false-positive share over 240 tests:", fp)
    assert fp["spatial_shift"] <= 0.08  # measured 0.02-0.03; binomial sd at 0.05 is 0.014
    assert fp["label_permutation"] >= 0.3  # measured ~0.6: the test tells the two nulls apart


def test_planted_niche_found(sim):
    """Demo layouts (6 stem niches with 75 % of macrophages; T/NK kept out) and a planted simulation."""
    demo = sim.demo_layouts(6, 199)
    sh = demo[demo.null == "spatial_shift"].set_index(["slide", "immune_type"])
    mac = sh.xs("Macrophage", level="immune_type")
    assert (mac.log2_enrichment > 0.5).all()
    assert ((mac.p < 0.05) & (mac.difference > 0)).sum() >= 4  # measured power 0.85 over 20-100 layouts
    t8 = sh.xs("T_CD8", level="immune_type")
    assert ((t8.p < 0.05) & (t8.difference < 0)).all()
    hits = 0
    for i in range(6):
        df = _run(sim, 2000 + i, 150, 6, strength=0.75).set_index("immune_type")
        hits += bool(df.loc["Macrophage", "p"] < 0.05 and df.loc["Macrophage", "difference"] > 0)
    assert hits >= 4


@pytest.mark.slow
def test_cosmx_pseudo_patches_calibrated(sim):
    """CosMx lung slide: 45 random contiguous pseudo-CSC patches of tumour cells (15, 30, 60 cells)."""
    import anndata as ad

    a = ad.read_h5ad(shared_file("spatial/cosmx_lung_subset.h5ad"))
    t = a.obs["cell_type"].astype(str).to_numpy()
    mal = pd.Series(t).str.startswith("tumor").to_numpy()
    immune = ["T CD4 naive", "T CD4 memory", "T CD8 naive", "T CD8 memory", "Treg", "macrophage", "B-cell", "NK",
              "neutrophil", "pDC", "mDC", "mast", "monocyte", "plasmablast"]  # fmt: skip
    comp = np.where(mal, "malignant", np.where(np.isin(t, immune), "immune", "other"))
    xy = np.asarray(a.obsm["spatial"], dtype=float)[:, :2]
    rng = np.random.default_rng(3)
    ps = {"spatial_shift": [], "label_permutation": []}
    for i in range(45):
        csc = sim.contiguous_patches(rng, xy, mal, (15, 30, 60)[i % 3], 1)
        for null in ps:
            df = spatial_neighbour_enrichment(xy, t, comp, csc, mal, null=null, n_permutations=199, seed=i)
            ps[null].append(df.set_index("immune_type").p)
    fp = {null: pd.concat(v, axis=1).lt(0.05).mean(axis=1) for null, v in ps.items()}
    print(pd.DataFrame(fp).round(3).to_string())
    pooled = {null: float(v.mean()) for null, v in fp.items()}
    print("pooled:", pooled)
    assert pooled["spatial_shift"] <= 0.07
    assert fp["spatial_shift"].max() <= 0.2
    assert fp["label_permutation"][["macrophage", "neutrophil"]].min() >= 0.2
