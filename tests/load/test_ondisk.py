"""Row-chunked .h5ad reading and writing (cscniche.load._ondisk) against anndata's in-memory reader and writer."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from cscniche.load import _ondisk as ondisk


def _counts(n=257, g=40, seed=0):
    rng = np.random.default_rng(seed)
    X = sparse.random(n, g, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    X.data = np.ceil(X.data * 10)
    obs = pd.DataFrame({"cell_type": rng.choice(["a", "b"], n)}, index=[f"c{i}" for i in range(n)])
    var = pd.DataFrame({"symbol": [f"G{j}" for j in range(g)]}, index=[f"G{j}" for j in range(g)])
    return ad.AnnData(X, obs=obs, var=var)


def test_blocks_written_then_read_equal_the_matrix(tmp_path):
    a = _counts()
    src = tmp_path / "a.h5ad"
    a.write_h5ad(src)
    assert ondisk.shape(src) == a.shape
    out = tmp_path / "b.h5ad"
    with ondisk.H5adWriter(out, var=a.var, uns={"k": 1}) as w:
        starts = []
        for start, block in ondisk.iter_rows(src, chunk_rows=50):
            starts.append(start)
            w.append(block)
        w.set_obs(a.obs, obsm={"spatial": np.arange(2 * a.n_obs).reshape(-1, 2)})
    assert starts == list(range(0, 257, 50))
    b = ad.read_h5ad(out)
    assert (b.X != a.X).nnz == 0 and b.X.dtype == np.float32
    pd.testing.assert_frame_equal(b.obs, a.obs)
    pd.testing.assert_frame_equal(b.var, a.var)
    assert b.uns["k"] == 1 and b.obsm["spatial"].shape == (257, 2)
    assert not (tmp_path / "b.h5ad.partial").exists()


def test_read_rows_in_one_pass_equals_fancy_indexing(tmp_path):
    a = _counts()
    src = tmp_path / "a.h5ad"
    a.write_h5ad(src)
    rows = np.array([0, 3, 49, 50, 51, 200, 256])
    got = ondisk.read_rows(src, rows, chunk_rows=50)
    assert (got != a.X[rows]).nnz == 0
    assert ondisk.read_rows(src, np.array([], dtype=int)).shape == (0, a.n_vars)
    with pytest.raises(ValueError, match="increasing"):
        ondisk.read_rows(src, np.array([5, 3]))


def test_dense_x_is_read_in_sparse_blocks(tmp_path):
    a = _counts()
    a.X = a.X.toarray()
    src = tmp_path / "dense.h5ad"
    a.write_h5ad(src)
    blocks = [b for _, b in ondisk.iter_rows(src, chunk_rows=100)]
    assert all(sparse.isspmatrix_csr(b) for b in blocks)
    assert np.array_equal(sparse.vstack(blocks).toarray(), a.X)


def test_an_error_leaves_no_partial_output(tmp_path):
    a = _counts()
    out = tmp_path / "b.h5ad"
    with pytest.raises(RuntimeError):
        with ondisk.H5adWriter(out, var=a.var) as w:
            w.append(a.X[:10])
            raise RuntimeError("boom")
    assert not out.exists() and not (tmp_path / "b.h5ad.partial").exists()
    w = ondisk.H5adWriter(out, var=a.var)
    w.append(a.X[:10])
    with pytest.raises(ValueError, match="obs has 5 rows, 10 rows"):
        w.set_obs(a.obs.iloc[:5])
    with pytest.raises(ValueError, match="columns"):
        w.append(a.X[:3, :5])
    w.abort()
    assert not out.exists()


def test_written_x_has_a_64_bit_indptr_and_large_chunks(tmp_path):
    import h5py

    a = _counts()
    out = tmp_path / "b.h5ad"
    with ondisk.H5adWriter(out, var=a.var) as w:
        w.append(a.X)
        w.set_obs(a.obs)
    with h5py.File(out) as f:
        assert f["X/indptr"].dtype == np.int64
        assert f["X/data"].chunks[0] >= 1 << 16 and f["X/indices"].chunks[0] >= 1 << 16
