"""QC a biologist can check: adaptive thresholds, per-cell-type accounting, notes, doublets, and the Wu CID4465 case."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import shared_file
from scipy import sparse
from scipy.stats import median_abs_deviation

from cscniche import QcParams
from cscniche.load import _ondisk as ondisk
from cscniche.preprocess._qc import REMOVED, detect_doublets, qc_filter, qc_filter_file, qc_thresholds


def _typed(n_a=300, n_b=150, g=400, seed=0, mt=True, mu_b=-0.2):
    """Two cell types: 'deep' (many genes) and 'shallow' (few genes, as T cells are in many 10x tumours)."""
    rng = np.random.default_rng(seed)
    prof_a = rng.gamma(0.6, 1.0, g)
    prof_b = rng.gamma(0.6, 1.0, g)
    xa = rng.poisson(prof_a * rng.lognormal(0.8, 0.6, (n_a, 1)))
    xb = rng.poisson(prof_b * rng.lognormal(mu_b, 0.6, (n_b, 1)))
    x = np.vstack([xa, xb]).astype(np.float32)
    genes = (["MT-CO1", "MT-ND1"] if mt else ["G_a", "G_b"]) + [f"G{i}" for i in range(g - 2)]
    obs = pd.DataFrame({"ct": ["deep"] * n_a + ["shallow"] * n_b}, index=[f"c{i}" for i in range(n_a + n_b)])
    return ad.AnnData(sparse.csr_matrix(x), obs=obs, var=pd.DataFrame(index=genes))


def test_adaptive_thresholds_are_median_minus_k_mads_of_log1p():
    rng = np.random.default_rng(1)
    m = pd.DataFrame({"n_genes": rng.integers(50, 3000, 500), "total_counts": rng.integers(100, 20000, 500)})
    th = qc_thresholds(m, adaptive=True, n_mads=3, n_mads_high=4)
    for col, name in (("n_genes", "genes"), ("total_counts", "counts")):
        x = np.log1p(m[col].to_numpy(float))
        mad = median_abs_deviation(x)
        assert th[f"min_{name}"] == pytest.approx(np.expm1(np.median(x) - 3 * mad), rel=1e-12)
        assert th[f"max_{name}"] == pytest.approx(np.expm1(np.median(x) + 4 * mad), rel=1e-12)
    assert np.isinf(qc_thresholds(m, adaptive=True)["max_genes"])  # no upper bound by default
    fixed = qc_thresholds(m, adaptive=False, min_genes=7, min_counts=9, max_pct_mt=3)
    assert fixed == {"min_genes": 7, "max_genes": np.inf, "min_counts": 9, "max_counts": np.inf, "max_pct_mt": 3}


def test_table_has_a_row_per_cell_type_and_warns_when_a_type_is_mostly_removed(caplog):
    a = _typed()
    low = np.median(np.asarray((a.X[a.obs["ct"].to_numpy() == "shallow"] > 0).sum(1)))
    fixed, table = qc_filter(
        a,
        sample="s",
        cell_type_key="ct",
        qc=QcParams(adaptive=False, min_genes=int(low) + 5, min_counts=0, doublets="off"),
    )
    assert table["cell_type"].tolist() == ["all", "deep", "shallow"]
    per = table.set_index("cell_type")
    assert per.loc["all", "n_cells_in"] == per.loc["deep", "n_cells_in"] + per.loc["shallow", "n_cells_in"] == 450
    for col in [*REMOVED, "n_cells_out"]:
        assert per.loc["all", col] == per.loc["deep", col] + per.loc["shallow", col], col
    assert per.loc["all", "n_cells_out"] == fixed.n_obs
    assert per.loc["shallow", "n_cells_out"] < 75 and per.loc["deep", "n_cells_out"] >= 270
    assert per.loc["shallow", "note"].startswith("QC removed") and "of shallow (150 -> " in per.loc["shallow", "note"]
    assert per.loc["deep", "note"] == ""
    assert "QC removed" in caplog.text and "of shallow" in caplog.text
    # the adaptive thresholds keep the shallow type: its cells are not outliers of the sample
    _, table = qc_filter(a, sample="s", cell_type_key="ct", qc=QcParams(doublets="off"))
    per = table.set_index("cell_type")
    assert per.loc["shallow", "n_cells_out"] >= 145 and per.loc["all", "thresholds"] == "adaptive"
    assert (table["note"] == "").all()


def test_no_mt_genes_is_a_note_not_silence(caplog):
    _, table = qc_filter(_typed(mt=False), sample="nomt", qc=QcParams(doublets="off"))
    assert table["cell_type"].tolist() == ["all"]  # no labels: one row for the sample
    assert table["n_mt_genes"].iloc[0] == 0 and "no MT- genes" in table["note"].iloc[0]
    assert "sample nomt: no MT- genes" in caplog.text
    _, table = qc_filter(_typed(mt=True), sample="mt", qc=QcParams(doublets="off"))
    assert table["n_mt_genes"].iloc[0] == 2 and "MT-" not in table["note"].iloc[0]


def _with_doublets(n_doublets=30, seed=0):
    """Planted doublets: the sum of one 'deep' and one 'shallow' cell."""
    a = _typed(n_a=400, n_b=400, g=600, seed=seed, mu_b=0.8)
    rng = np.random.default_rng(seed + 10)
    x = a.X.toarray()
    i = rng.choice(400, n_doublets, replace=False)
    j = 400 + rng.choice(400, n_doublets, replace=False)
    d = ad.AnnData(sparse.csr_matrix(x[i] + x[j]), var=a.var.copy())
    d.obs_names = [f"dbl{k}" for k in range(n_doublets)]
    d.obs["ct"] = "deep"  # an author label would usually name one of the two
    return ad.concat([a, d], merge="same")


def test_doublets_are_called_seeded_counted_and_removed(tmp_path):
    a = _with_doublets()
    score1, pred1, note1 = detect_doublets(a.X, seed=0)
    score2, pred2, _ = detect_doublets(a.X, seed=0)
    np.testing.assert_array_equal(score1, score2)  # deterministic
    np.testing.assert_array_equal(pred1, pred2)
    planted = a.obs_names.str.startswith("dbl")
    assert pred1[planted].mean() >= 0.6 and pred1[~planted].mean() <= 0.05, (pred1[planted].mean(), note1)
    kept, table = qc_filter(a, sample="d", cell_type_key="ct")
    flagged, table_f = qc_filter(a, sample="d", cell_type_key="ct", qc=QcParams(doublets="flag"))
    n_dbl = int(flagged.obs["predicted_doublet"].sum())
    assert (
        n_dbl >= 0.6 * planted.sum()
        and flagged.obs.loc[flagged.obs_names.str.startswith("dbl"), "predicted_doublet"].mean() > 0.6
    )
    row = table.iloc[0]
    assert row["doublets"] == table_f["doublets"].iloc[0] == n_dbl
    assert row["n_cells_out"] == kept.n_obs == flagged.n_obs - n_dbl == table_f["n_cells_out"].iloc[0] - n_dbl
    assert (
        not kept.obs["predicted_doublet"].any()
        and not kept.obs_names.isin(flagged.obs_names[flagged.obs["predicted_doublet"]]).any()
    )
    off, table_o = qc_filter(a, sample="d", qc=QcParams(doublets="off"))
    assert off.n_obs == flagged.n_obs and table_o["doublets"].iloc[0] == 0 and "predicted_doublet" not in off.obs
    # the streamed QC removes the same cells
    a.write_h5ad(tmp_path / "in.h5ad")
    streamed = qc_filter_file(tmp_path / "in.h5ad", tmp_path / "out.h5ad", sample="d", cell_type_key="ct")
    pd.testing.assert_frame_equal(streamed, table, check_dtype=False)
    assert list(ad.read_h5ad(tmp_path / "out.h5ad").obs_names) == list(kept.obs_names)


def test_wu_cid4465_t_cells_survive_adaptive_qc(tmp_path):
    """The case of issue 17: fixed thresholds removed 78 % of Wu CID4465's T cells (116 -> 26), silently."""
    src = shared_file("tumour/wu2021_tnbc_CID4465.h5ad")
    fixed = qc_filter_file(src, tmp_path / "f.h5ad", sample="wu", cell_type_key="celltype_major", qc=QcParams(adaptive=False, doublets="off")).set_index("cell_type")  # fmt: skip
    assert (fixed.loc["T-cells", "n_cells_in"], fixed.loc["T-cells", "n_cells_out"]) == (116, 26)
    assert "QC removed 78% of T-cells (116 -> 26)" in fixed.loc["T-cells", "note"]
    adaptive = qc_filter_file(src, tmp_path / "a.h5ad", sample="wu", cell_type_key="celltype_major").set_index(
        "cell_type"
    )
    for ct in ("T-cells", "PVL", "Cancer Epithelial"):
        assert adaptive.loc[ct, "n_cells_out"] >= 0.95 * adaptive.loc[ct, "n_cells_in"], adaptive.loc[ct]
    assert (adaptive.loc["all", "n_cells_in"], adaptive.loc["all", "n_cells_out"], adaptive.loc["all", "doublets"]) == (1564, 1562, 2)  # fmt: skip
    assert not adaptive["note"].str.contains("QC removed").any()


@pytest.mark.slow
def test_exact_neighbour_doublets_match_scanpys_approximate_default_on_real_tumours():
    """detect_doublets uses exact kNN; scanpy's default above ~1,370 cells is pynndescent (slower: numba compile and
    ~2x the time per cell). On both droplet tumours the same cells are called, scores agree to r > 0.999."""
    import scanpy as sc

    for name, n_cells, n_dbl in (("tumour/wu2021_tnbc_CID4465.h5ad", 1564, 2), ("tumour/moncada2020_pdac_a_sc.h5ad", 1926, 6)):  # fmt: skip
        raw = ad.read_h5ad(shared_file(name))
        x = sparse.csr_matrix(raw.X, dtype=np.float32)
        assert x.shape[0] == n_cells and np.allclose(x.data, np.round(x.data))  # raw counts, all cells
        score, pred, _ = detect_doublets(x, seed=0)
        ref = ad.AnnData(x.copy())
        sc.pp.scrublet(ref, expected_doublet_rate=0.05, n_prin_comps=30, random_state=0, verbose=False, use_approx_neighbors=True)  # fmt: skip
        assert pred.sum() == n_dbl, (name, pred.sum())  # before QC's other filters (the QC table says 2 and 7)
        np.testing.assert_array_equal(pred, ref.obs["predicted_doublet"].fillna(False).to_numpy(bool), err_msg=name)
        assert np.corrcoef(score, ref.obs["doublet_score"].to_numpy(float))[0, 1] > 0.999, name


def test_moncada_pdac_a_has_no_mt_genes_and_says_so(tmp_path):
    src = shared_file("tumour/moncada2020_pdac_a_sc.h5ad")
    table = qc_filter_file(src, tmp_path / "m.h5ad", sample="mo", cell_type_key="Cell", qc=QcParams(doublets="off"))
    first = table.iloc[0]
    assert first["cell_type"] == "all" and first["n_mt_genes"] == 0 and first["removed_high_mt"] == 0
    assert "no MT- genes in the data" in first["note"]
    assert "Tuft cells" in set(table["cell_type"])  # the author labels, one row each


def test_spatial_samples_are_not_tested_for_doublets(tmp_path):
    a = _with_doublets()
    a.obsm["spatial"] = np.random.default_rng(0).random((a.n_obs, 2))
    kept, table = qc_filter(a, sample="st")
    assert "predicted_doublet" not in kept.obs and table["doublets"].iloc[0] == 0
    assert "doublet detection skipped: spatial sample" in table["note"].iloc[0]
    a.write_h5ad(tmp_path / "st.h5ad")
    streamed = qc_filter_file(tmp_path / "st.h5ad", tmp_path / "out.h5ad", sample="st")
    pd.testing.assert_frame_equal(streamed, table, check_dtype=False)


def test_doublets_are_called_in_bounded_batches_the_same_streamed_and_in_memory(tmp_path, monkeypatch):
    import cscniche.preprocess._qc as qc_mod

    monkeypatch.setattr(qc_mod, "DOUBLET_BATCH", 300)  # 830 cells: 3 batches of ~277
    monkeypatch.setattr(ondisk, "CHUNK_ROWS", 128)  # blocks that straddle the batches
    a = _with_doublets()
    kept, table = qc_filter(a, sample="b", qc=QcParams(doublets="flag"))
    assert "doublets called in 3 batches of about 27" in table["note"].iloc[0]
    assert kept.obs.loc[kept.obs_names.str.startswith("dbl"), "predicted_doublet"].mean() > 0.5
    a.write_h5ad(tmp_path / "b.h5ad")
    streamed = qc_filter_file(tmp_path / "b.h5ad", tmp_path / "out.h5ad", sample="b", qc=QcParams(doublets="flag"))
    pd.testing.assert_frame_equal(streamed, table, check_dtype=False)
    got = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(got.obs["doublet_score"].to_numpy(), kept.obs["doublet_score"].to_numpy())
    # two batches at once in worker processes (rule qc's threads): the same scores, bit for bit
    par = qc_filter_file(tmp_path / "b.h5ad", tmp_path / "par.h5ad", sample="b", qc=QcParams(doublets="flag"),
                         workers=2)  # fmt: skip
    pd.testing.assert_frame_equal(par, streamed)
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "par.h5ad").obs["doublet_score"].to_numpy(),
                                  got.obs["doublet_score"].to_numpy())  # fmt: skip
