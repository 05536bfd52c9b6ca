"""CNV-confirmed malignant cells: gene positions, the too-few-genes stop, the demo's planted CNV, real data."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, shared_file

import cscniche as cn
from cscniche import InputError
from cscniche.demo import CNV_EVENTS, make_demo
from cscniche.stemness._cnv import annotate_positions, read_gene_positions

SHIPPED = DATA / "reference/gene_positions_hg38.tsv.gz"
DEMO_CNV = cn.CnvParams(gene_positions="")  # the demo genes carry their own (synthetic) positions


def _prepared(seed=1, cnv=True, **kw):
    a = make_demo(seed=seed, cnv=cnv, **kw)
    a, _ = cn.preprocess.qc(a, sample="d")
    cn.preprocess.embed(a, embedding=cn.EmbeddingParams(umap=False))
    cn.preprocess.annotate(a, markers=DATA / "markers.tsv", compartments=DATA / "compartments.tsv")
    return a


@pytest.fixture(scope="module")
def demo_annotated():
    return _prepared()


def test_shipped_positions_equal_the_reference_table():
    ours = read_gene_positions(SHIPPED)
    ref = read_gene_positions(shared_file("reference/human_genes_hg38.tsv.gz"))
    assert len(ours) == len(ref) > 28000
    common = ours.index.intersection(ref.index)
    pd.testing.assert_frame_equal(ours.loc[common], ref.loc[common])
    assert ours.loc["EPCAM", "chromosome"] == "chr2"


def test_gtf_positions(tmp_path):
    gtf = tmp_path / "mini.gtf.gz"
    lines = [
        "#!genome-build GRCh38",
        '2\tHAVANA\tgene\t47345158\t47387601\t.\t+\t.\tgene_id "ENSG00000119888"; gene_name "EPCAM";',
        '2\tHAVANA\ttranscript\t47345158\t47387601\t.\t+\t.\tgene_id "ENSG00000119888"; gene_name "EPCAM";',
        'chr11\tHAVANA\tgene\t35139171\t35232402\t.\t+\t.\tgene_id "ENSG00000026508"; gene_name "CD44";',
    ]
    with gzip.open(gtf, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    pos = read_gene_positions(gtf)
    assert list(pos.index) == ["EPCAM", "CD44"]
    assert pos.loc["EPCAM"].tolist() == ["chr2", 47345158, 47387601]
    assert pos.loc["CD44", "chromosome"] == "chr11"


def test_too_few_positioned_genes_is_a_clear_error(demo_annotated):
    a = demo_annotated.copy()
    a.var = a.var.drop(columns=["chromosome", "start", "end"])
    with pytest.raises(InputError, match=r"sample 'd'.*only \d+ of \d+ genes have an autosomal genomic position"):
        cn.stemness.cnv(
            a, sample="d", cnv=cn.CnvParams(gene_positions=str(SHIPPED))
        )  # BG* demo genes have no real position
    with pytest.raises(ValueError, match="minimum 500"):
        annotate_positions(a.copy(), None, min_genes=500)


def test_demo_cnv_recovers_the_malignant_cells(demo_annotated):
    a = demo_annotated.copy()
    table = cn.stemness.cnv(a, sample="d", cnv=DEMO_CNV)
    truth = (a.obs["truth_compartment"] == "malignant").to_numpy()
    assert (a.obs["malignant"].to_numpy() == truth).mean() > 0.99
    assert (a.obs["cnv_high"].to_numpy() == truth).mean() > 0.98  # the CNV alone, whatever the lineage
    held = (a.obs["cnv_reference"] == "held_out").to_numpy()
    assert a.obs["cnv_high"].to_numpy()[held].mean() <= 0.03  # ~1 % of normal cells pass the 0.99 quantile
    assert table.loc[0, "f1"] > 0.99 and table.loc[0, "n_reference"] == (~truth).sum()
    # the gained chromosomes are up in malignant cells
    chr_pos = a.obsm["X_cnv"]
    assert chr_pos.shape[0] == a.n_obs and set(CNV_EVENTS) <= set(a.var["chromosome"])


def test_lineage_candidates_without_cnv_are_rejected(demo_annotated):
    a = demo_annotated.copy()
    comp = a.obs["compartment"].astype(str).to_numpy()
    mislabelled = np.flatnonzero(a.obs["truth_cell_type"].astype(str).to_numpy() == "T_CD8")[:60]
    comp[mislabelled] = "malignant"  # author labels that call some T cells cancer
    a.obs["compartment"] = pd.Categorical(comp, categories=["malignant", "immune", "stromal", "other"])
    table = cn.stemness.cnv(a, sample="d", cnv=DEMO_CNV)
    assert not a.obs["malignant"].to_numpy()[mislabelled].any()
    assert table.loc[0, "n_candidate_rejected"] >= 60
    assert table.loc[0, "precision"] == 1.0 and table.loc[0, "recall"] < 0.96  # disagreement is written, not hidden


def test_without_cnv_in_the_data_few_cells_pass(tmp_path):
    a = _prepared(seed=3, cnv=False)
    cn.stemness.cnv(a, sample="d", cnv=DEMO_CNV)
    mal = (a.obs["truth_compartment"] == "malignant").to_numpy()
    assert a.obs["malignant"].to_numpy()[mal].mean() < 0.2  # no copy-number change, (almost) no malignant call


def test_disabled_cnv_keeps_the_compartment(demo_annotated):
    a = demo_annotated.copy()
    cn.stemness.cnv(a, sample="d", cnv=cn.CnvParams(enabled=False))
    np.testing.assert_array_equal(a.obs["malignant"].to_numpy(), (a.obs["compartment"] == "malignant").to_numpy())


def test_wu_cnv_call_agrees_with_author_labels():
    """Real TNBC tumour: CNV-confirmed malignant cells vs the author label "Cancer Epithelial"."""
    from cscniche.load import _readers as io

    path = shared_file("tumour/wu2021_tnbc_CID4465.h5ad")
    a = io.load_sample(path, sample="wu", cell_type_key="celltype_major")
    a, _ = cn.preprocess.qc(a, sample="wu", qc=cn.QcParams(min_genes=20, min_counts=20))
    cn.preprocess.embed(a, embedding=cn.EmbeddingParams(umap=False))
    cn.preprocess.annotate(
        a,
        cell_type_key="celltype_major",
        markers=DATA / "markers.tsv",
        compartments=DATA / "compartments.tsv",
    )
    table = cn.stemness.cnv(a, sample="wu", cnv=cn.CnvParams(gene_positions=str(SHIPPED))).iloc[0]
    author = (a.obs["cell_type"] == "Cancer Epithelial").to_numpy()
    call = a.obs["malignant"].to_numpy()
    tp = (call & author).sum()
    precision, recall = tp / call.sum(), tp / author.sum()
    f1 = 2 * precision * recall / (precision + recall)
    print(
        f"Wu CID4465: precision {precision:.3f} recall {recall:.3f} F1 {f1:.3f}; CNV alone F1 {table.cnv_only_f1:.3f}"
    )
    assert f1 >= 0.9 and table["f1"] == pytest.approx(f1)
    assert table["cnv_only_f1"] >= 0.85  # the CNV score alone, ignoring lineage labels


def test_block_by_block_infercnv_equals_one_infercnvpy_call(demo_annotated, monkeypatch):
    import concurrent.futures

    import infercnvpy

    from cscniche.stemness._cnv import infer_cnv

    a = demo_annotated.copy()
    annotate_positions(a, None, min_genes=100)
    ref = (a.obs["truth_compartment"] != "malignant").to_numpy()
    types = a.obs["truth_cell_type"].astype(str).to_numpy()
    with monkeypatch.context() as m:  # ours runs in this process: no pool is started
        m.setattr(concurrent.futures, "ProcessPoolExecutor", None)
        x_cnv, msq = infer_cnv(a, ref, groups=types, chunk_cells=700)  # 4 blocks, the last one short
    import infercnvpy.tl._infercnv as impl

    assert impl.process_map.__module__.startswith("tqdm")  # infercnvpy's own pool is back for the call below
    tmp = a.copy()
    tmp.obs["ref"] = np.where(ref, types, "__query__")
    _, whole, _ = infercnvpy.tl.infercnv(tmp, reference_key="ref", reference_cat=sorted(set(types[ref])),
                                         window_size=100, step=10, dynamic_threshold=1.5, chunksize=700,
                                         n_jobs=1, inplace=False)  # fmt: skip
    whole = whole.toarray()
    assert x_cnv.shape == whole.shape and x_cnv.dtype == np.float32
    np.testing.assert_allclose(x_cnv.toarray(), whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(msq, np.mean(whole**2, axis=1), rtol=1e-12)


def test_a_targeted_panel_keeps_the_labels_and_says_so(demo_annotated):
    """Under cnv.min_genes_for_calls positioned genes the CNV score is reported but the labelled candidates are
    the malignant cells, with a warning; at 0 the same 900 genes let the CNV decide (and reject cells)."""
    keep = np.sort(np.random.default_rng(0).choice(demo_annotated.n_vars, 900, replace=False))
    a = demo_annotated[:, keep].copy()
    labelled = (a.obs["compartment"] == "malignant").to_numpy()
    table = cn.stemness.cnv(a, sample="panel", cnv=DEMO_CNV)
    row = table.iloc[0]
    assert row["n_genes_with_position"] < 1000
    np.testing.assert_array_equal(a.obs["malignant"].to_numpy(bool), labelled)
    assert "not CNV-confirmed" in row["cnv_warning"] and "panel" in row["cnv_warning"]
    assert "not used" in row["rule"] and 0 < row["cnv_only_f1"] <= 1
    b = demo_annotated[:, keep].copy()
    strict = cn.stemness.cnv(b, sample="panel", cnv=cn.CnvParams(gene_positions="", min_genes_for_calls=0)).iloc[0]
    assert "cnv_warning" not in strict or pd.isna(strict.get("cnv_warning"))
    assert not (b.obs["malignant"].to_numpy(bool) & ~labelled).any()


def test_too_few_reference_cells_keep_the_labels(demo_annotated):
    a = demo_annotated.copy()
    row = cn.stemness.cnv(a, sample="d", cnv=cn.CnvParams(gene_positions="", min_reference_cells=10**6)).iloc[0]
    assert row["rule"] == "compartment only (too few reference cells)" and "cnv_warning" not in row
    np.testing.assert_array_equal(a.obs["malignant"].to_numpy(bool), (a.obs["compartment"] == "malignant").to_numpy())
