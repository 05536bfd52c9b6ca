"""Loading: counts detection, gene symbols, formats, one-line errors naming sample and file."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from cscniche import InputError
from cscniche.load._readers import diagnose_counts, find_counts, guess_format, load_sample


def _counts(n=50, g=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.poisson(2.0, size=(n, g)).astype(np.float32)
    return ad.AnnData(
        sparse.csr_matrix(x),
        obs=pd.DataFrame({"label": ["a"] * n}, index=[f"c{i}" for i in range(n)]),
        var=pd.DataFrame(index=[f"G{i}" for i in range(g)]),
    )


def _lognorm(a):
    b = a.copy()
    sc.pp.normalize_total(b)
    sc.pp.log1p(b)
    return b


def test_counts_found_in_x(tmp_path):
    a = _counts()
    p = tmp_path / "a.h5ad"
    a.write_h5ad(p)
    out = load_sample(p, sample="s1")
    assert out.uns["cscniche"]["load"]["counts_from"] == "X"
    np.testing.assert_array_equal(out.layers["counts"].toarray(), a.X.toarray())
    assert (out.obs["sample"] == "s1").all()


def test_counts_found_in_layer_and_raw():
    a = _counts()
    b = _lognorm(a)
    b.layers["counts"] = a.X.copy()
    where, c = find_counts(b)
    assert where == "layers['counts']"
    np.testing.assert_array_equal(c.X.toarray(), a.X.toarray())
    b2 = _lognorm(a)
    b2.raw = a
    where, c = find_counts(b2)
    assert where == "raw.X"
    np.testing.assert_array_equal(c.X.toarray(), a.X.toarray())


def test_log_data_offered_as_counts_is_refused(tmp_path):
    p = tmp_path / "log.h5ad"
    _lognorm(_counts()).write_h5ad(p)
    with pytest.raises(InputError) as e:
        load_sample(p, sample="lg")
    msg = str(e.value)
    assert "sample 'lg'" in msg and str(p) in msg and "log-normalised" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("value", "phrase"),
    [(-1.0, "negative"), (np.nan, "NaN"), (2.5e3 + 0.5, "not integers")],
)
def test_bad_values_diagnosed(value, phrase):
    x = np.ones((5, 5), dtype=np.float32)
    x[2, 3] = value
    assert phrase in diagnose_counts(sparse.csr_matrix(x))


def test_missing_cell_type_key_names_sample_and_file(tmp_path):
    p = tmp_path / "a.h5ad"
    _counts().write_h5ad(p)
    with pytest.raises(
        InputError, match=r"sample 's2', file '.*a.h5ad': cell_type_key 'celltype' is not an obs column"
    ):
        load_sample(p, sample="s2", cell_type_key="celltype")


def test_duplicate_gene_names_made_unique(tmp_path):
    a = _counts()
    a.var_names = ["G0", "G0"] + [f"G{i}" for i in range(2, a.n_vars)]
    p = tmp_path / "d.h5ad"
    a.write_h5ad(p)
    out = load_sample(p, sample="d")
    assert out.var_names.is_unique
    assert out.uns["cscniche"]["load"]["n_duplicated_genes"] == 1


def test_ensembl_ids_use_symbol_column_or_fail(tmp_path):
    a = _counts(g=10)
    a.var_names = [f"ENSG{i:011d}" for i in range(10)]
    p = tmp_path / "e.h5ad"
    a.write_h5ad(p)
    with pytest.raises(InputError, match="Ensembl IDs"):
        load_sample(p, sample="e")
    a.var["gene_symbols"] = [f"SYM{i}" for i in range(10)]
    a.write_h5ad(p)
    out = load_sample(p, sample="e")
    assert list(out.var_names[:2]) == ["SYM0", "SYM1"]
    assert out.var["original_id"].iloc[0] == "ENSG00000000000"


def test_truncated_and_missing_files(tmp_path):
    p = tmp_path / "t.h5ad"
    _counts().write_h5ad(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match=r"sample 't', file '.*t.h5ad': could not be read as h5ad"):
        load_sample(p, sample="t")
    with pytest.raises(InputError, match="file not found"):
        load_sample(tmp_path / "nope.h5ad", sample="t")


def test_10x_mtx_and_csv(tmp_path):
    import gzip

    from scipy.io import mmwrite

    a = _counts(n=30, g=20)
    d = tmp_path / "tenx"
    d.mkdir()
    mmwrite(str(d / "matrix.mtx"), sparse.csr_matrix(a.X.T.astype(np.int64)))
    for name in ("matrix.mtx",):
        with open(d / name, "rb") as f, gzip.open(d / f"{name}.gz", "wb") as g:
            g.write(f.read())
        (d / name).unlink()
    with gzip.open(d / "features.tsv.gz", "wt") as f:
        for i, g in enumerate(a.var_names):
            f.write(f"ENSG{i:011d}\t{g}\tGene Expression\n")
    with gzip.open(d / "barcodes.tsv.gz", "wt") as f:
        f.write("\n".join(a.obs_names) + "\n")
    assert guess_format(d) == "10x_mtx"
    out = load_sample(d, sample="tenx")
    assert list(out.var_names) == list(a.var_names)
    np.testing.assert_array_equal(out.X.toarray(), a.X.toarray())
    csv = tmp_path / "m.csv"
    pd.DataFrame(a.X.toarray(), index=a.obs_names, columns=a.var_names).to_csv(csv)
    out = load_sample(csv, sample="csv")
    np.testing.assert_array_equal(out.X.toarray(), a.X.toarray())


def test_unknown_extension_asks_for_format(tmp_path):
    p = tmp_path / "x.rds"
    p.write_text("x")
    with pytest.raises(InputError, match="format"):
        guess_format(p)
