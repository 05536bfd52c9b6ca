"""The benchmark scripts' own logic (the benchmarks themselves are run by hand; numbers in the README)."""

from __future__ import annotations

import importlib.util
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from conftest import ROOT, shared_file
from scipy import sparse


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_resample_thins_real_counts_and_keeps_labels(tmp_path):
    bp = _module("bench_pipeline")
    src = shared_file("tumour/wu2021_tnbc_CID4465.h5ad")
    bp.resample(src, tmp_path / "r.h5ad", 3000, seed=1, pool=1)
    a, r = ad.read_h5ad(src), ad.read_h5ad(tmp_path / "r.h5ad")
    assert r.shape == (3000, a.n_vars) and r.obs_names.is_unique
    X = sparse.csr_matrix(r.X)
    assert np.array_equal(X.data, np.round(X.data)) and X.data.min() >= 1  # integer counts, no stored zeros
    orig = r.obs_names.str.rsplit("_", n=1).str[0]
    pos = a.obs_names.get_indexer(orig)
    assert (pos >= 0).all()
    assert (r.obs["celltype_major"].to_numpy() == a.obs["celltype_major"].to_numpy()[pos]).all()
    src_lib = np.asarray(a.X.sum(axis=1)).ravel()[pos]
    lib = np.asarray(X.sum(axis=1)).ravel()
    assert (lib <= src_lib).all() and 0.6 < np.median(lib / src_lib) < 1.0  # thinned by U(0.6, 1)
    assert (X != sparse.csr_matrix(a.X)[pos]).nnz > 0  # copies differ from their source


def test_resample_pools_cells_of_one_type_streamed_and_deterministic(tmp_path):
    bp = _module("bench_pipeline")
    src = shared_file("tumour/wu2021_tnbc_CID4465.h5ad")
    a = ad.read_h5ad(src)
    src_type = a.obs["celltype_major"].astype(str)
    src_lib = pd.Series(np.asarray(a.X.sum(axis=1)).ravel(), index=a.obs_names)
    runs = {}
    for name, kw in {"big": {"block_cells": 1000}, "small": {"block_cells": 64}, "again": {"block_cells": 1000},
                     "unpooled": {"block_cells": 1000, "pool": 1}}.items():  # fmt: skip
        kw.setdefault("pool", 3)
        stats = bp.resample(src, tmp_path / f"{name}.h5ad", 300, seed=4, **kw)
        runs[name] = (ad.read_h5ad(tmp_path / f"{name}.h5ad"), stats)
    r, stats = runs["big"]
    X = sparse.csr_matrix(r.X)
    assert r.shape == (300, a.n_vars) and r.obs_names.is_unique
    assert X.dtype == np.float32 and np.array_equal(X.data, np.round(X.data)) and X.data.min() >= 1
    with h5py.File(tmp_path / "big.h5ad") as f:  # past 2**31 stored values an int32 indptr cannot be appended to
        assert f["X/indptr"].dtype == np.int64
        assert all(f[f"X/{k}"].chunks[0] >= 2**16 for k in ("data", "indices", "indptr"))  # not millions of chunks
    pooled = r.obs["pooled_from"].str.split(";")
    assert (pooled.str.len() == 3).all()
    for cell_type, barcodes in zip(r.obs["celltype_major"].astype(str), pooled, strict=True):
        assert (src_type[barcodes] == cell_type).all()
    lib = np.asarray(X.sum(axis=1)).ravel()
    pool_lib = np.array([src_lib[b].sum() for b in pooled])
    assert (lib <= pool_lib).all() and 0.6 < np.median(lib / pool_lib) < 1.0  # thinned sums
    genes = np.diff(X.indptr)
    assert np.array_equal(r.obs["nFeature_RNA"], genes) and np.array_equal(r.obs["nCount_RNA"], lib)
    assert stats == {"median_genes": np.median(genes), "median_counts": np.median(lib), "nnz": X.nnz}
    for other in ("small", "again"):  # block size does not matter; a second run gives the same file content
        o = runs[other][0]
        assert (sparse.csr_matrix(o.X) != X).nnz == 0
        pd.testing.assert_frame_equal(o.obs, r.obs)
    u = sparse.csr_matrix(runs["unpooled"][0].X)
    assert np.median(genes) > 1.5 * np.median(np.diff(u.indptr))


def test_per_step_reads_snakemake_benchmark_files(tmp_path):
    bp = _module("bench_pipeline")
    d = tmp_path / "logs" / "s1"
    d.mkdir(parents=True)
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (d / "score.benchmark.tsv").write_text(head + "12.5\t0:00:12\t2048.0\t1\t1\t1\t0\t0\t90\t11\n")
    (d / "qc.benchmark.tsv").write_text(head + "1.0\t0:00:01\tNA\t1\t1\t1\t0\t0\t90\t1\n")
    rows = {r["step"]: r for r in bp.per_step(tmp_path)}
    assert rows["score"]["seconds"] == 12.5 and rows["score"]["max_rss_gb"] == 2.0
    assert rows["score"]["sample"] == "s1" and np.isnan(rows["qc"]["max_rss_gb"])
