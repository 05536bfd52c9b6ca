"""The streaming loader (cscniche.load.write_sample) writes what load_sample returns, block by block."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from cscniche import InputError
from cscniche.load import _ondisk as ondisk
from cscniche.load._readers import load_sample, write_sample


def _counts(n=130, g=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.poisson(0.7, size=(n, g)).astype(np.float32)
    genes = [f"G{i}" for i in range(g)]
    genes[5] = "G4"  # a duplicated symbol, made unique the scanpy way
    genes[7] = "HLA.A"  # an R-mangled checkpoint gene, harmonised to HLA-A
    obs = pd.DataFrame(
        {"label": rng.choice(["tumour", "T cell"], n), "patient": rng.choice(["P1", "P2"], n)},
        index=[f"c{i}" for i in range(n)],
    )
    return ad.AnnData(sparse.csr_matrix(x), obs=obs, var=pd.DataFrame(index=genes))


def _lognorm(a):
    b = a.copy()
    sc.pp.normalize_total(b)
    sc.pp.log1p(b)
    return b


def _same(streamed_path, loaded):
    got = ad.read_h5ad(streamed_path)
    loaded.strings_to_categoricals()  # what anndata's writer does to text columns
    assert not got.layers, "the streamed file keeps the counts once, in X"
    assert (got.X != loaded.layers["counts"]).nnz == 0 and got.X.dtype == np.float32
    pd.testing.assert_frame_equal(got.obs, loaded.obs)
    pd.testing.assert_frame_equal(got.var, loaded.var)
    assert got.uns["cscniche"]["load"]["counts_from"] == loaded.uns["cscniche"]["load"]["counts_from"]
    assert list(got.var_names) == list(loaded.var_names)
    for k in loaded.obsm:
        np.testing.assert_array_equal(got.obsm[k], loaded.obsm[k])


@pytest.mark.parametrize("where", ["X", "layers", "raw"])
def test_streamed_file_equals_the_in_memory_load(tmp_path, monkeypatch, where):
    monkeypatch.setattr(ondisk, "CHUNK_ROWS", 40)  # several blocks
    a = _counts()
    a.obsm["spatial"] = np.arange(2 * a.n_obs, dtype=float).reshape(-1, 2)
    if where == "layers":
        b = _lognorm(a)
        b.layers["counts"] = a.X.copy()
    elif where == "raw":
        b = _lognorm(a)
        b.raw = a
        b = b[:, 3:].copy()  # raw keeps more genes than X: the counts' genes are raw's
    else:
        b = a
    src = tmp_path / "in.h5ad"
    b.write_h5ad(src)
    kw = dict(sample="s1", cell_type_key="label", subset="patient == 'P1'", known_genes={"HLA-A"})
    write_sample(src, tmp_path / "out.h5ad", **kw)
    loaded = load_sample(src, **kw)
    assert loaded.n_obs == (a.obs["patient"] == "P1").sum() and "HLA-A" in loaded.var_names
    _same(tmp_path / "out.h5ad", loaded)


def test_a_block_of_non_counts_after_the_first_stops_with_no_output(tmp_path, monkeypatch):
    monkeypatch.setattr(ondisk, "CHUNK_ROWS", 40)
    a = _counts()
    x = a.X.toarray()
    x[100:] = x[100:] * 0.37  # normalised values in the last cells only
    a.X = sparse.csr_matrix(x)
    src = tmp_path / "in.h5ad"
    a.write_h5ad(src)
    out = tmp_path / "out.h5ad"
    with pytest.raises(InputError) as e:
        write_sample(src, out, sample="s1")
    msg = str(e.value)
    assert "s1" in msg and str(src) in msg and "not in cells 80-120" in msg and "\n" not in msg
    assert not out.exists() and not list(tmp_path.glob("out.h5ad*"))


def test_log_normalised_h5ad_is_refused_before_anything_is_written(tmp_path):
    src = tmp_path / "log.h5ad"
    _lognorm(_counts()).write_h5ad(src)
    with pytest.raises(InputError, match="log-normalised"):
        write_sample(src, tmp_path / "out.h5ad", sample="s1")
    assert not list(tmp_path.glob("out.h5ad*"))


def test_csc_and_other_formats_are_loaded_in_memory_and_written_once(tmp_path):
    a = _counts()
    a.X = sparse.csc_matrix(a.X)
    src = tmp_path / "csc.h5ad"
    a.write_h5ad(src)
    write_sample(src, tmp_path / "out.h5ad", sample="s1", known_genes={"HLA-A"})
    _same(tmp_path / "out.h5ad", load_sample(src, sample="s1", known_genes={"HLA-A"}))
    csv = tmp_path / "m.csv"
    b = _counts(n=30, g=20)
    pd.DataFrame(b.X.toarray(), index=b.obs_names, columns=[f"GENE{i}" for i in range(20)]).to_csv(csv)
    write_sample(csv, tmp_path / "csv.h5ad", sample="s2")
    got = ad.read_h5ad(tmp_path / "csv.h5ad")
    assert got.shape == (30, 20) and not got.layers and np.allclose(got.X.toarray(), b.X.toarray())
