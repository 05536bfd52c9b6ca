"""The neighbours step (issue 16): patch-regrowth null by default, one row per immune type, CSC definitions,
threshold-free stemness rows whose null keeps spatial structure, the knn note, the sketch column."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import benchmark_module

import cscniche as cn
from cscniche.niche import _continuous
from cscniche.niche._steps import KNN_NOTE, NEIGHBOUR_COLUMNS
from cscniche.niche.spatial_null import spatial_graph


@pytest.fixture(scope="module")
def demo_table(demo_defs):
    return cn.niche.neighbours(demo_defs, sample="demo", neighbours=cn.NeighboursParams(n_permutations=999))


def test_demo_niche_found_under_the_default_spatial_null(demo_table):
    df = demo_table
    assert list(df.columns) == NEIGHBOUR_COLUMNS
    sp = df[(df.neighbourhood == "spatial") & (df.definition == "calibrated")].set_index("immune_type")
    assert (sp["null"] == "patch_regrowth").all() and sp.index.is_unique  # one test per type, no mirror row
    for niche in ("Macrophage", "MDSC_like"):
        assert sp.loc[niche, "log2_enrichment"] > 0.5 and sp.loc[niche, "fdr"] < 0.05, niche
    for kept_out in ("T_CD8", "NK"):
        assert sp.loc[kept_out, "log2_enrichment"] < -1 and sp.loc[kept_out, "fdr"] < 0.05, kept_out
    assert sp.loc["B", "p"] > 0.05


def test_every_definition_and_the_continuous_rows(demo_table):
    df = demo_table
    assert set(df.definition) == {"calibrated", "quantile", "continuous"}
    q = df[(df.neighbourhood == "spatial") & (df.definition == "quantile")].set_index("immune_type")
    assert q.loc["Macrophage", "log2_enrichment"] > 0.5 and q.loc["Macrophage", "p"] < 0.05
    c = df[(df.neighbourhood == "spatial") & (df.definition == "continuous")].set_index("immune_type")
    assert (c["null"] == "stemness_shift").all()
    # more stem-like malignant cells have more TAM/MDSC and fewer T/NK among their physical neighbours
    assert c.loc["Macrophage", "rho"] > 0.15 and c.loc["Macrophage", "fdr"] < 0.05
    assert c.loc["T_CD8", "rho"] < -0.15 and c.loc["T_CD8", "fdr"] < 0.05
    assert c["log2_enrichment"].isna().all() and c["rho"].notna().sum() >= 6


def test_knn_rows_say_transcriptional_and_use_label_permutation(demo_table):
    knn = demo_table[demo_table.neighbourhood == "knn"]
    assert knn["note"].str.startswith(KNN_NOTE).all()
    assert set(knn.loc[knn.definition != "continuous", "null"]) == {"label_permutation"}
    assert (demo_table.neighbourhood == "spatial").any() and not demo_table["sketch"].any()


def test_without_definitions_the_primary_call_is_used(demo_processed):
    a = demo_processed.copy()
    a.obsm.pop("spatial")
    a.uns["cscniche"] = {k: v for k, v in a.uns["cscniche"].items() if k != "csc_definitions"}  # an older file
    df = cn.niche.neighbours(a, sample="demo", neighbours=cn.NeighboursParams(n_permutations=50))
    assert set(df.definition) == {"primary", "continuous"} and set(df.neighbourhood) == {"knn"}


def test_a_sketch_is_said(demo_processed):
    a = demo_processed.copy()
    a.uns["cscniche"] = {
        **a.uns.get("cscniche", {}),
        "sketch": {"n_cells_qc": 4 * a.n_obs, "n_cells_analysed": a.n_obs},
    }
    df = cn.niche.neighbours(a, sample="demo", neighbours=cn.NeighboursParams(n_permutations=20))
    assert df["sketch"].all()
    assert df.loc[df.neighbourhood == "spatial", "note"].str.contains("sketch of").all()


def test_bad_null_name_is_refused():
    with pytest.raises(ValueError, match="spatial_null"):
        cn.NeighboursParams(spatial_null="rotation")


def _continuous_fp(bench, null: str, n_slides: int, n_perm: int = 99) -> float:
    """Share of (slide, immune type) with p < 0.05: patchy stemness field, patchy independent immune cells."""
    hits = []
    for i in range(n_slides):
        xy, types, csc = bench.sim_slide(i, 150, 1 + i % 3)
        rng = np.random.default_rng(i)
        stem = csc.astype(float) + 0.25 * rng.normal(size=len(csc))  # a patchy field plus cell noise
        comp = bench.compartments(types)
        mal = types == "Malignant"
        adj = spatial_graph(xy, k=10)[0]
        res = _continuous.neighbour_share_association(
            adj, stem, types, comp, mal, coords=xy, null=null, n_permutations=n_perm, seed=i
        )
        hits.extend(res["p"][np.isfinite(res["p"])] < 0.05)
    return float(np.mean(hits))


def test_continuous_null_keeps_spatial_structure():
    """Patchy stemness vs patchy independent immune types: shift null near 0.05, cell permutation far above."""
    bench = benchmark_module("validate_spatial_null")
    fp_shift = _continuous_fp(bench, "spatial_shift", 30)
    fp_perm = _continuous_fp(bench, "label_permutation", 20)
    print(f"continuous stemness null: P(p<0.05) shift {fp_shift:.3f}, permutation {fp_perm:.3f}")
    assert fp_shift <= 0.1  # measured 0.01 over 100 slides (400 tests): conservative
    assert fp_perm >= 0.12  # measured 0.24 over 40 slides: cells treated as exchangeable


def test_rank_correlation_of_identity_draw_is_spearman():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200), rng.normal(size=(200, 2))
    y[:, 1] += s
    from scipy.stats import rankdata, spearmanr

    rs = rankdata(s) - 100.5
    ry = np.column_stack([rankdata(c) for c in y.T]) - 100.5
    rho = _continuous._rho_draws(rs, ry, np.arange(200)[None, :])[0]
    assert rho == pytest.approx([spearmanr(s, y[:, j]).statistic for j in range(2)])


def test_definitions_survive_the_h5ad_round_trip(demo_defs, tmp_path):
    """uns lists come back from .h5ad as arrays (the CosMx run failed on `array or []` before this test)."""
    import anndata as ad

    from cscniche.niche._definitions import csc_definitions

    demo_defs.write_h5ad(tmp_path / "s.h5ad")
    back = ad.read_h5ad(tmp_path / "s.h5ad")
    assert isinstance(back.uns["cscniche"]["csc_definitions"], np.ndarray)
    assert [n for n, _ in csc_definitions(back)] == ["calibrated", "quantile"]
    df = cn.niche.niche_checkpoints(back, sample="demo")
    assert set(df.definition) >= {"calibrated", "quantile"}
