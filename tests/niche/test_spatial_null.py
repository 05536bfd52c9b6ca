"""The spatial nulls of cscniche.niche.spatial_null (patch regrowth, the default, and the field shift) against
the label permutation (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import benchmark_module, shared_file

_bench = benchmark_module("validate_spatial_null")
_sn = _bench._sn
COLUMNS, ShiftField, spatial_neighbour_enrichment = _sn.COLUMNS, _sn.ShiftField, _sn.spatial_neighbour_enrichment
PatchRegrowth = _sn.PatchRegrowth
SPATIAL_NULLS = ("patch_regrowth", "spatial_shift")


@pytest.fixture(scope="module")
def sim():
    """The simulation helpers of benchmarks/validate_spatial_null.py."""
    return _bench


def _run(sim, i, size, n_patches, strength=0.0, null="patch_regrowth", n_perm=199):
    xy, types, csc = sim.sim_slide(i, size, n_patches, strength)
    return spatial_neighbour_enrichment(
        xy, types, sim.compartments(types), csc, null=null, n_permutations=n_perm, seed=i
    )


def test_columns_and_determinism(sim):
    a = _run(sim, 3, 150, 1)
    b = _run(sim, 3, 150, 1)
    assert list(a.columns) == COLUMNS
    assert sorted(a.immune_type) == sorted(sim.IMMUNE)
    assert (a["null"] == "patch_regrowth").all() and (a.n_permutations == 199).all()
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


def _grid(n_side=40):
    g = np.arange(n_side, dtype=float)
    return np.column_stack([np.repeat(g, n_side), np.tile(g, n_side)])


def test_patch_regrowth_keeps_patch_sizes_and_count():
    """Two patches (20 and 7 cells) and 5 scattered CSC on a 40 x 40 lattice of malignant cells."""
    xy = _grid()
    d = np.linalg.norm(xy - [5, 5], axis=1)
    csc = np.zeros(len(xy), dtype=bool)
    csc[np.argsort(d, kind="stable")[:20]] = True
    csc[np.argsort(np.linalg.norm(xy - [30, 30], axis=1), kind="stable")[:7]] = True
    csc[[15 * 40 + 35, 35 * 40 + 15, 20 * 40 + 20, 2 * 40 + 37, 37 * 40 + 2]] = True  # isolated cells
    pr = PatchRegrowth(xy, csc)
    assert pr.sizes.tolist() == [20, 7] and pr.n_single == 5
    lab = pr.labels(200, np.random.default_rng(0))
    assert lab.shape == (200, len(xy)) and (lab.sum(axis=1) == 32).all()  # the CSC count, exactly
    largest = [PatchRegrowth(xy, row).sizes.max() for row in lab[:50]]
    assert min(largest) >= 20  # the 20-cell patch is re-grown contiguous (it may touch another)
    assert len({row.tobytes() for row in lab}) == 200  # placements differ between draws
    again = pr.labels(200, np.random.default_rng(0))
    assert (again == lab).all()  # the seed fixes the draws
    # every cell is reachable: over the draws CSC land all over the lattice, not near the observed patches only
    assert lab.mean(axis=0).max() < 0.2 and (lab.sum(axis=0) > 0).mean() > 0.9
    # patches larger than the cached nearest-cell lists (48) take the tree path: still exact and contiguous
    big = np.zeros(len(xy), dtype=bool)
    big[np.argsort(np.linalg.norm(xy - [10, 10], axis=1), kind="stable")[:200]] = True
    big[np.argsort(np.linalg.norm(xy - [32, 32], axis=1), kind="stable")[:60]] = True
    pr = PatchRegrowth(xy, big)
    assert pr.clustered and pr.sizes.tolist() == [200, 60]
    lab = pr.labels(100, np.random.default_rng(2))
    assert (lab.sum(axis=1) == 260).all()
    assert min(PatchRegrowth(xy, row).sizes.max() for row in lab[:30]) >= 200


def test_scattered_labels_are_not_patches_and_get_the_label_permutation(sim):
    """Random labels form groups by chance (at 30 % CSC half of them touch another CSC): such a labelling is not
    clustered (its CSC-CSC link count is not above 19 random labellings'), so the null is the label permutation,
    draw for draw. Re-growing its chance groups as balls gave p < 0.05 in 0-0.8 % of tests and no power. A real
    patch among scattered CSC makes the labelling clustered and is re-grown."""
    xy, types, _ = sim.sim_slide(7, 150, 1)
    mal = types == "Malignant"
    comp = sim.compartments(types)
    rng = np.random.default_rng(5)
    for frac in (0.1, 0.3, 0.45):
        clustered, compared = 0, 0
        for _ in range(10):
            lab = mal & (rng.random(len(xy)) < frac)
            pr = PatchRegrowth(xy[mal], lab[mal])
            assert len(pr.join_count_random) == 19
            if pr.clustered:  # above all 19 random labellings: 1 labelling in 20 by chance
                clustered += 1
                continue
            assert pr.sizes.size == 0 and pr.n_single == lab.sum()
            if compared < 2:
                a = spatial_neighbour_enrichment(xy, types, comp, lab, null="patch_regrowth", n_permutations=99, seed=3)
                b = spatial_neighbour_enrichment(
                    xy, types, comp, lab, null="label_permutation", n_permutations=99, seed=3
                )
                np.testing.assert_array_equal(a.p.to_numpy(), b.p.to_numpy())
                compared += 1
        assert clustered <= 2 and compared == 2, (frac, clustered)
    patch = sim.contiguous_patches(rng, xy, mal, 150, 1)
    mixed = patch | (mal & (rng.random(len(xy)) < 0.05))
    pr = PatchRegrowth(xy[mal], mixed[mal])
    assert pr.clustered and pr.join_count > 2 * pr.join_count_random.max()
    assert pr.sizes[0] >= 150 and pr.sizes.sum() + pr.n_single == mixed.sum()


def test_patch_regrowth_follows_local_density():
    """A 30-cell patch re-grown where malignant cells are 4x sparser covers ~4x the area (the ball of its 30
    nearest malignant cells), so it meets the neighbours a patch there would meet: the field shift moves an
    area instead and, on the sparse side, covers ~4x fewer cells."""
    dense = _grid(40) * 0.5  # spacing 0.5 on [0, 20)
    sparse_ = _grid(20) + [20.5, 0]  # spacing 1 on [20.5, 40)
    xy = np.vstack([dense, sparse_[sparse_[:, 1] < 20]])
    is_sparse = xy[:, 0] > 20
    csc = np.zeros(len(xy), dtype=bool)
    csc[np.argsort(np.linalg.norm(xy - [10, 10], axis=1), kind="stable")[:30]] = True  # in the dense half
    lab = PatchRegrowth(xy, csc).labels(400, np.random.default_rng(1))
    on_sparse = lab[:, is_sparse].sum(axis=1) == 30
    assert on_sparse.sum() >= 40 and (lab.sum(axis=1) == 30).all()
    area = [np.ptp(xy[row], axis=0).prod() for row in lab[on_sparse]]
    assert np.median(area) > 3 * np.ptp(xy[csc], axis=0).prod()


@pytest.mark.parametrize("null", SPATIAL_NULLS)
def test_patchy_null_calibrated_label_permutation_not(sim, null):
    """60 null slides (CSC 150 cells in 1 or 3 patches, immune patches independent), 4 immune types each."""
    res = {n: [] for n in (null, "label_permutation")}
    for i in range(60):
        for n in res:
            res[n].append(_run(sim, 1000 + i, 150, (1, 3)[i % 2], null=n, n_perm=99).p.to_numpy())
    fp = {n: float(np.mean(np.concatenate(v) < 0.05)) for n, v in res.items()}
    print("false-positive share over 240 tests:", fp)
    assert fp[null] <= 0.08  # measured 0.02-0.04; binomial sd at 0.05 is 0.014
    assert fp["label_permutation"] >= 0.3  # measured ~0.6: the test tells the nulls apart


def test_majority_csc_null_calibrated(sim):
    """CSC the majority (as a marker phenotype can be): the non-CSC are 50-150 cells in 1 or 3 patches, or 10 %
    scattered; immune patches independent. Re-growing the majority label instead gave p = 0.0002 for every
    immune type on the demo's phenotype call; the field shift is anti-conservative here (measured 0.12-0.23)."""
    ps = []
    for i in range(45):
        xy, types, csc = sim.sim_slide(3000 + i, (50, 150)[i % 2], (1, 3)[i // 2 % 2])
        mal = types == "Malignant"
        lab = mal & ~csc if i % 3 else mal & (np.random.default_rng(i).random(len(xy)) < 0.9)
        df = spatial_neighbour_enrichment(xy, types, sim.compartments(types), lab, n_permutations=99, seed=i)
        assert (df.n_csc > 0.8 * (df.n_csc + df.n_noncsc)).all()
        ps.append(df.p.to_numpy())
    fp = float(np.mean(np.concatenate(ps) < 0.05))
    print(f"majority CSC: share of p < 0.05 over 180 tests {fp:.3f}")
    assert fp <= 0.08  # measured 0.025 over 240 tests (60 slides, 199 draws; 0.017-0.050 per type)


def test_planted_niche_found(sim):
    """Demo layouts (6 stem niches with 75 % of macrophages; T/NK kept out) and a planted simulation."""
    demo = sim.demo_layouts(6, 199)
    sh = demo[demo.null == "patch_regrowth"].set_index(["slide", "immune_type"])
    mac = sh.xs("Macrophage", level="immune_type")
    assert (mac.log2_enrichment > 0.5).all()
    assert ((mac.p < 0.05) & (mac.difference > 0)).sum() >= 5  # measured power 1.0 over 20 layouts (shift 0.7)
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
    ps = {"patch_regrowth": [], "spatial_shift": [], "label_permutation": []}
    for i in range(45):
        csc = sim.contiguous_patches(rng, xy, mal, (15, 30, 60)[i % 3], 1)
        for null in ps:
            df = spatial_neighbour_enrichment(xy, t, comp, csc, mal, null=null, n_permutations=199, seed=i)
            ps[null].append(df.set_index("immune_type").p)
    fp = {null: pd.concat(v, axis=1).lt(0.05).mean(axis=1) for null, v in ps.items()}
    print(pd.DataFrame(fp).round(3).to_string())
    pooled = {null: float(v.mean()) for null, v in fp.items()}
    print("pooled:", pooled)
    for null in SPATIAL_NULLS:
        assert pooled[null] <= 0.07, null
        assert fp[null].max() <= 0.2, null
    assert fp["label_permutation"][["macrophage", "neutrophil"]].min() >= 0.2


def test_merfish_margin_and_score_like_labels_calibrated_under_patch_regrowth(sim):
    """MERFISH lung slide, where margin patches beat the field shift: 60 random 30-cell pseudo-CSC patches and
    60 score-like labellings (top 5/10 % of a smooth random field), all unrelated to the immune cells."""
    shared_file("spatial/merfish_lung_tessera.h5ad")
    name, xy, t, comp, mal, _ = next(s for s in sim.real_slides() if s[0] == "merfish")
    spacing = float(np.median(sim.cKDTree(xy[mal]).query(xy[mal], 2)[0][:, 1]))
    rng = np.random.default_rng(11)
    ps = {"patches": [], "score-like": []}
    for i in range(60):
        labellings = {
            "patches": sim.contiguous_patches(rng, xy, mal, 30, 1),
            "score-like": sim.smooth_field_labels(rng, xy, mal, (0.05, 0.10)[i % 2], spacing * (3, 8)[i // 2 % 2]),
        }
        for gen, csc in labellings.items():
            df = spatial_neighbour_enrichment(xy, t, comp, csc, mal, n_permutations=199, seed=i)
            assert (df["null"] == "patch_regrowth").all() and (df.n_permutations == 199).all()
            ps[gen].append(df.set_index("immune_type").p)
    fp = pd.DataFrame({gen: pd.concat(v, axis=1).lt(0.05).mean(axis=1) for gen, v in ps.items()})
    print(fp.round(3).to_string())
    assert fp.to_numpy().mean() <= 0.06  # measured 0.03-0.05 over 210 labellings (field shift: 0.079 at 30 cells)
    assert fp.to_numpy().max() <= 0.13  # 60 tests per cell: binomial sd at 0.05 is 0.028
