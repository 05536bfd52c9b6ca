"""Streaming QC (cscniche.preprocess.qc_filter_file) keeps what the in-memory, scanpy-based qc_filter keeps."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from cscniche import InputError, QcParams
from cscniche.load import _ondisk as ondisk
from cscniche.preprocess._qc import qc_filter, qc_filter_file


def _counts(n=300, g=80, seed=3):
    rng = np.random.default_rng(seed)
    depth = rng.lognormal(0.0, 0.8, size=(n, 1))
    x = rng.poisson(0.9 * depth, size=(n, g)).astype(np.float32)
    x[:, :3] *= rng.integers(0, 4, size=(n, 1))  # MT- genes, high in some cells
    x[:, -5:] = 0  # genes never detected
    x[:, -6] = (rng.random(n) < 0.01).astype(np.float32)  # a rarely detected gene
    genes = ["MT-CO1", "MT-ND1", "mt-atp6"] + [f"G{i}" for i in range(g - 3)]
    obs = pd.DataFrame({"label": rng.choice(["a", "b"], n)}, index=[f"c{i}" for i in range(n)])
    a = ad.AnnData(sparse.csr_matrix(x), obs=obs, var=pd.DataFrame(index=genes))
    a.obsm["spatial"] = rng.random((n, 2))
    return a


@pytest.mark.parametrize(("min_cells", "adaptive"), [(0, False), (4, False), (0, True)])
def test_streamed_qc_equals_in_memory_qc(tmp_path, monkeypatch, min_cells, adaptive):
    monkeypatch.setattr(ondisk, "CHUNK_ROWS", 64)
    a = _counts()
    src = tmp_path / "loaded.h5ad"
    a.write_h5ad(src)
    qc = QcParams(min_genes=30, min_counts=60, max_pct_mt=15.0, min_cells=min_cells, adaptive=adaptive, n_mads=2,
                  doublets="off")  # fmt: skip
    ref, ref_table = qc_filter(a, sample="s1", qc=qc, cell_type_key="label")
    table = qc_filter_file(src, tmp_path / "qc.h5ad", sample="s1", qc=qc, cell_type_key="label")
    got = ad.read_h5ad(tmp_path / "qc.h5ad")
    assert 0 < got.n_obs < a.n_obs and (min_cells == 0 or got.n_vars < a.n_vars), "the case filters cells and genes"
    pd.testing.assert_frame_equal(table, ref_table, check_dtype=False)
    assert list(got.obs_names) == list(ref.obs_names) and list(got.var_names) == list(ref.var_names)
    assert (got.X != ref.layers["counts"]).nnz == 0 and not got.layers
    for col in ["n_genes", "total_counts", "total_counts_mt", "pct_counts_mt", "label"]:
        np.testing.assert_allclose(got.obs[col].to_numpy(float) if col != "label" else 0,
                                   ref.obs[col].to_numpy(float) if col != "label" else 0, rtol=1e-6)  # fmt: skip
    assert (got.obs["label"].astype(str) == ref.obs["label"].astype(str)).all()
    for col in ["mt", "n_cells_by_counts", "mean_counts", "pct_dropout_by_counts", "total_counts"]:
        np.testing.assert_allclose(got.var[col].to_numpy(float), ref.var[col].to_numpy(float), rtol=1e-6)
    np.testing.assert_array_equal(got.obsm["spatial"], ref.obsm["spatial"])


def test_qc_removing_every_cell_leaves_no_output(tmp_path):
    src = tmp_path / "loaded.h5ad"
    _counts().write_h5ad(src)
    out = tmp_path / "qc.h5ad"
    with pytest.raises(InputError) as e:
        qc_filter_file(src, out, sample="s9", qc=QcParams(min_genes=10_000, adaptive=False))
    assert "s9" in str(e.value) and "QC removed every cell" in str(e.value)
    assert not list(tmp_path.glob("qc.h5ad*"))


def test_analysis_reads_a_seeded_uniform_sketch_above_max_cells(tmp_path, monkeypatch):
    import scanpy as sc

    from cscniche.preprocess._embed import read_for_analysis, sketch

    monkeypatch.setattr(ondisk, "CHUNK_ROWS", 50)
    a = _counts(n=400)
    path = tmp_path / "qc.h5ad"
    a.write_h5ad(path)
    full = read_for_analysis(path, sample="s1", max_cells=None)
    assert full.n_obs == 400 and full.uns["cscniche"]["sketch"]["n_cells_analysed"] == 400
    kw = {"sample": "s1", "max_cells": 150, "spatial_sketch": "uniform"}  # the data have coordinates
    one = read_for_analysis(path, seed=7, **kw)
    two = read_for_analysis(path, seed=7, **kw)
    other = read_for_analysis(path, seed=8, **kw)
    assert one.n_obs == 150 and list(one.obs_names) == list(two.obs_names) != list(other.obs_names)
    assert one.uns["cscniche"]["sketch"] == {"n_cells_qc": 400, "n_cells_analysed": 150, "seed": 7, "max_cells": 150,
                                             "kind": "uniform"}  # fmt: skip
    rows = sketch(400, 150, seed=7)
    assert np.all(np.diff(rows) > 0) and list(one.obs_names) == list(a.obs_names[rows])
    ref = a[rows].copy()
    assert (one.layers["counts"] != ref.X).nnz == 0
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    np.testing.assert_allclose(one.X.toarray(), ref.X.toarray(), rtol=1e-6)
    np.testing.assert_array_equal(one.obsm["spatial"], a.obsm["spatial"][rows])
    # uniform: over many seeds every cell is drawn about max_cells / n_obs of the time
    hits = np.zeros(400)
    for s in range(400):
        hits[sketch(400, 150, seed=s)] += 1
    assert abs(hits.mean() / 400 - 150 / 400) < 1e-12 and hits.std() / 400 < 0.05


def test_a_slide_is_sketched_by_region_and_keeps_its_physical_neighbourhoods(tmp_path):
    """Above max_cells a slide (obsm['spatial']) is analysed on the cells nearest its centre: interior cells keep
    the k nearest cells they have in the whole tissue; a uniform sketch of the same size widens them."""
    from scipy.spatial import cKDTree

    from cscniche.niche._definitions import sketch_info
    from cscniche.preprocess._embed import read_for_analysis, region_sketch

    rng = np.random.default_rng(4)
    n = 3000
    a = _counts(n=n)
    a.obsm["spatial"] = rng.uniform(0, 1000, (n, 2))
    path = tmp_path / "qc.h5ad"
    a.write_h5ad(path)
    reg = read_for_analysis(path, sample="s1", max_cells=1000)
    assert reg.n_obs == 1000 and reg.uns["cscniche"]["sketch"]["kind"] == "region"
    rows = region_sketch(a.obsm["spatial"], 1000)
    assert list(reg.obs_names) == list(a.obs_names[rows])
    xy = a.obsm["spatial"]
    d_centre = np.hypot(*(xy - np.median(xy, axis=0)).T)
    assert d_centre[rows].max() <= np.delete(d_centre, rows).min()  # a disc: every cell nearer than the rest
    # physical neighbourhoods: the 10 nearest cells of the region's interior cells, in the sketch vs the tissue
    k = 10
    _, nn_full = cKDTree(xy).query(xy, k + 1)
    inner = rows[d_centre[rows] < 0.8 * d_centre[rows].max()]
    _, nn_reg = cKDTree(xy[rows]).query(xy[inner], k + 1)
    same = np.mean([set(rows[nn_reg[i]]) == set(nn_full[c]) for i, c in enumerate(inner)])
    print(f"region sketch: interior cells with the tissue's own 10 nearest cells: {same:.3f}")
    assert same == 1.0
    uni = read_for_analysis(path, sample="s1", max_cells=1000, spatial_sketch="uniform")
    urows = a.obs_names.get_indexer(uni.obs_names)
    du, _ = cKDTree(xy[urows]).query(xy[urows], k + 1)
    df, _ = cKDTree(xy).query(xy[urows], k + 1)
    widen = float(np.median(du[:, -1] / df[:, -1]))
    print(f"uniform sketch of 1/3 of the cells: the 10th neighbour is {widen:.2f}x further")
    assert 1.5 < widen < 2.0  # ~sqrt(3)
    assert sketch_info(reg)[0] and "region sketch" in sketch_info(reg)[1]
    assert "reach ~1.7x further" in sketch_info(uni)[1]
    with pytest.raises(ValueError, match="spatial_sketch"):
        read_for_analysis(path, sample="s1", max_cells=1000, spatial_sketch="tiles")
