"""Gene-identifier harmonisation and the readers of public file layouts, on real data from ../shared."""

from __future__ import annotations

import gzip
import io
import tarfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import shared_file
from scipy import io as spio
from scipy import sparse

from cscniche.load._formats import extract_archive, join_obs, read_mtx_dir, read_text_matrix, subset_cells
from cscniche.load._genes import harmonise, is_mouse, read_gene_map


def _gene_map_from_reference(tmp_path, symbols):
    ref = pd.read_csv(shared_file("reference/human_genes_hg38.tsv.gz"), sep="\t", dtype=str)
    ref = ref.dropna(subset=["ensembl_id"])
    ref = ref[ref["symbol"].isin(symbols)][["ensembl_id", "symbol"]]
    p = tmp_path / "map.tsv"
    ref.to_csv(p, sep="\t", index=False)
    return p, ref


def test_ensembl_ids_with_versions_map_to_symbols_on_real_data(tmp_path):
    wu = ad.read_h5ad(shared_file("tumour/wu2021_tnbc_CID4465.h5ad"))
    path, ref = _gene_map_from_reference(tmp_path, set(wu.var_names))
    sym2ens = {s: e.split(";")[-1] for s, e in zip(ref["symbol"], ref["ensembl_id"], strict=True)}
    genes = ["PROM1", "THY1", "CD44", "EPCAM", "CD274", "CD47", "B2M"]
    ids = [f"{sym2ens[g]}.{i + 3}" for i, g in enumerate(genes)] + ["ENSG99999999999"]
    out, rep = harmonise(ids, gene_map=read_gene_map(path))
    assert out[:-1] == genes
    assert out[-1] == "ENSG99999999999"  # unmapped IDs are kept, and counted
    assert rep.n_version_stripped == 7 and rep.n_ensembl_mapped == 7 and rep.n_ensembl_unmapped == 1


def test_mangled_symbols_are_repaired():
    moncada = ad.read_h5ad(shared_file("tumour/moncada2020_pdac_a_sc.h5ad"), backed="r")
    assert "1-Mar" in moncada.var_names  # the spreadsheet-mangled names are really there
    out, rep = harmonise(["1-Mar", "2-Sep", "1-Dec", "HLA.A", "HLA.B", "MT.CO1", "ACTB"], known={"HLA-A", "HLA-B"})
    assert out == ["MARCHF1", "SEPTIN2", "DELEC1", "HLA-A", "HLA-B", "MT.CO1", "ACTB"]
    assert rep.n_dates_fixed == 3 and rep.n_dots_fixed == 2


def test_aliases_renamed_only_when_the_current_symbol_is_absent():
    out, rep = harmonise(["PDL1", "CD133", "TIM3", "THY1", "CD90"])
    assert out == ["CD274", "PROM1", "HAVCR2", "THY1", "CD90"]
    assert rep.n_alias_renamed == 3


def test_cosmx_hla_names_become_hla_symbols():
    cosmx = ad.read_h5ad(shared_file("spatial/cosmx_lung_subset.h5ad"), backed="r")
    out, _ = harmonise(cosmx.var_names, known={"HLA-A", "HLA-B", "HLA-C", "HLA-E"})
    assert {"HLA-A", "HLA-B"} <= set(out)


def test_mouse_detection():
    assert is_mouse(["Actb", "Gapdh", "Cd44", "Prom1", "Epcam"] * 10)
    assert is_mouse([f"ENSMUSG{i:011d}" for i in range(20)])
    assert not is_mouse(["ACTB", "GAPDH", "CD44", "PROM1", "EPCAM"] * 10)


def _write_10x(folder, adata, prefix="", legacy=False, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spio.mmwrite(buf, sparse.csr_matrix(adata.X.T.astype(np.int64)))
    opener = (lambda p, m: gzip.open(p, m)) if gz else (lambda p, m: open(p, m))
    sfx = ".gz" if gz else ""
    with opener(folder / f"{prefix}matrix.mtx{sfx}", "wb") as f:
        f.write(buf.getvalue())
    genes = "genes.tsv" if legacy else "features.tsv"
    with opener(folder / f"{prefix}{genes}{sfx}", "wt") as f:
        for i, g in enumerate(adata.var_names):
            f.write(f"ENSG{i:011d}\t{g}" + ("" if legacy else "\tGene Expression") + "\n")
    with opener(folder / f"{prefix}barcodes.tsv{sfx}", "wt") as f:
        f.write("\n".join(adata.obs_names) + "\n")


@pytest.fixture(scope="module")
def wu_small():
    wu = ad.read_h5ad(shared_file("tumour/wu2021_tnbc_CID4465.h5ad"))
    return wu[::8, :3000].copy()  # every 8th cell: the file is sorted by cell type


@pytest.mark.parametrize(
    ("prefix", "legacy", "gz"), [("", False, True), ("GSE176078_CID4465_", True, True), ("x_", False, False)]
)
def test_mtx_folder_layouts(tmp_path, wu_small, prefix, legacy, gz):
    _write_10x(tmp_path / "tenx", wu_small, prefix=prefix, legacy=legacy, gz=gz)
    got = read_mtx_dir(tmp_path / "tenx")
    assert list(got.var_names) == list(wu_small.var_names)
    assert (got.X != wu_small.X).nnz == 0


@pytest.mark.parametrize("orientation", ["cells_x_genes", "genes_x_cells"])
def test_text_matrix_both_orientations_detected(tmp_path, wu_small, orientation):
    df = pd.DataFrame(wu_small.X.toarray().astype(int), index=wu_small.obs_names, columns=wu_small.var_names)
    if orientation == "genes_x_cells":
        df = df.T
    p = tmp_path / "m.txt.gz"
    df.to_csv(p, sep="\t", compression="gzip")
    got = read_text_matrix(p, known_genes={"CD44", "EPCAM", "PTPRC", "ACTB", *wu_small.var_names[:200]}, chunksize=37)
    assert list(got.obs_names) == list(wu_small.obs_names)
    assert (got.X != wu_small.X).nnz == 0


def test_tarball_extracted_and_read(tmp_path, wu_small):
    _write_10x(tmp_path / "s1", wu_small, prefix="GSM1_")
    tar = tmp_path / "GSM1.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(tmp_path / "s1", arcname="s1")
    folder = extract_archive(tar, tmp_path / "out")
    assert folder.name == "s1"
    assert read_mtx_dir(folder).n_obs == wu_small.n_obs
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="outside"):
        extract_archive(evil, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()


def test_metadata_join_and_subset(tmp_path, wu_small):
    a = ad.AnnData(wu_small.X, obs=pd.DataFrame(index=wu_small.obs_names), var=wu_small.var.copy())
    meta = wu_small.obs[["celltype_major", "celltype_minor"]].reset_index(names="Cell")
    p = tmp_path / "meta.txt.gz"
    meta.iloc[::-1].to_csv(p, sep="\t", index=False, compression="gzip")
    assert join_obs(a, p) == wu_small.n_obs
    pd.testing.assert_series_equal(
        a.obs["celltype_major"].astype(str), wu_small.obs["celltype_major"].astype(str), check_names=False
    )
    top = wu_small.obs["celltype_major"].astype(str).value_counts().index[0]
    sub = subset_cells(a, f"celltype_major == '{top}'")
    assert 0 < sub.n_obs == int((wu_small.obs["celltype_major"] == top).sum()) < a.n_obs
    with pytest.raises(ValueError, match="keeps no cell"):
        subset_cells(a, "celltype_major == 'none'")
    with pytest.raises(ValueError, match="no cell ID"):
        b = a.copy()
        b.obs_names = [f"x{i}" for i in range(b.n_obs)]
        join_obs(b, p)


def test_10x_h5_and_loom_are_read(tmp_path, wu_small):
    import h5py

    from cscniche.load._readers import load_sample

    x = sparse.csc_matrix(wu_small.X.T.astype(np.int32))  # genes x cells, as Cell Ranger stores it
    p = tmp_path / "filtered_feature_bc_matrix.h5"
    with h5py.File(p, "w") as f:
        g = f.create_group("matrix")
        g.create_dataset("data", data=x.data)
        g.create_dataset("indices", data=x.indices)
        g.create_dataset("indptr", data=x.indptr)
        g.create_dataset("shape", data=np.array(x.shape, dtype=np.int32))
        g.create_dataset("barcodes", data=np.array(wu_small.obs_names, dtype="S"))
        feat = g.create_group("features")
        feat.create_dataset("id", data=np.array([f"ENSG{i:011d}" for i in range(x.shape[0])], dtype="S"))
        feat.create_dataset("name", data=np.array(wu_small.var_names, dtype="S"))
        feat.create_dataset("feature_type", data=np.array(["Gene Expression"] * x.shape[0], dtype="S"))
        feat.create_dataset("genome", data=np.array(["GRCh38"] * x.shape[0], dtype="S"))
    got = load_sample(p, sample="h5")
    assert list(got.var_names) == list(wu_small.var_names) and (got.X != wu_small.X).nnz == 0
    loom = tmp_path / "s.loom"
    ad.AnnData(
        wu_small.X, obs=pd.DataFrame(index=wu_small.obs_names), var=pd.DataFrame(index=wu_small.var_names)
    ).write_loom(loom)
    got = load_sample(loom, sample="loom")
    assert got.n_obs == wu_small.n_obs and (got.X != wu_small.X).nnz == 0
