"""Projection of every QC-passed cell through the analysed sketch's fits (cscniche.stemness.project)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

import cscniche as cn
from cscniche.load import _ondisk as ondisk

GMT = [DATA / "genesets/csc_signatures.gmt"]
SCORE = dict(
    scoring=cn.ScoringParams(gene_sets=tuple(GMT), methods=("mean", "ucell", "aucell", "pearson")),
    csc=cn.CscParams(n_random_sets=200),
)


def _analyse(demo_raw, tmp_path, max_cells):
    from cscniche.load._readers import write_sample

    src = tmp_path / "demo.h5ad"
    demo_raw.write_h5ad(src)
    write_sample(src, tmp_path / "loaded.h5ad", sample="demo")
    cn.preprocess.qc_file(tmp_path / "loaded.h5ad", tmp_path / "qc.h5ad", sample="demo")
    adata = cn.preprocess.embed_sample(
        tmp_path / "qc.h5ad",
        sample="demo",
        scale=cn.ScaleParams(max_cells=max_cells, spatial_sketch="uniform"),  # projection from a uniform sample
        embedding=cn.EmbeddingParams(umap=False),
    )
    cn.preprocess.annotate(adata, markers=DATA / "markers.tsv", compartments=DATA / "compartments.tsv")
    cn.stemness.cnv(adata, sample="demo", cnv=cn.CnvParams(enabled=False))
    cn.stemness.score(adata, sample="demo", **SCORE)
    return adata


@pytest.fixture(scope="module")
def whole(demo_raw, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whole")
    adata = _analyse(demo_raw, tmp, None)
    return adata, cn.stemness.project(tmp / "qc.h5ad", adata, sample="demo", **SCORE)


def test_without_a_sketch_projection_gives_every_cell_its_analysed_values(whole):
    adata, table = whole
    assert len(table) == adata.n_obs and table["in_sketch"].all()
    assert list(table["cell_id"]) == list(adata.obs_names)
    obs = adata.obs
    numeric = [c for c in table.columns if c.startswith(("score_", "ucell_", "aucell_", "pearson_", "stemness"))]
    numeric += ["csc_fdr", "n_genes", "total_counts"] + [c for c in table.columns if c.startswith("expr_")]
    assert len(numeric) >= 29  # 4 methods x 4 sets, 5 indices, p, FDR, 2 QC columns, 4 markers
    for c in numeric:
        np.testing.assert_allclose(table[c].to_numpy(float), obs[c].to_numpy(float), rtol=1e-6, atol=1e-9,
                                   equal_nan=True, err_msg=c)  # fmt: skip
    for c in ["cell_type", "compartment", "leiden", "malignant", "csc", "group"]:
        assert (table[c].astype(str).to_numpy() == obs[c].astype(str).to_numpy()).all(), c
    assert table["csc"].sum() > 50
    assert table["stemness_pvalue"].notna().sum() == obs["malignant"].sum()  # the sketch's own p, not refitted


def test_the_pooled_null_is_fitted_only_when_cells_lie_outside_the_sketch(whole):
    adata, _ = whole
    sets = {"CSC_MARKERS": ["PROM1", "THY1", "CD44", "EPCAM"]}
    kw = dict(methods=["mean"], stemness_method="mean", n_random_sets=50)
    assert cn.stemness._project.SketchModel(adata, sets, ["CSC_MARKERS"], fit_null=False, **kw).pooled is None
    assert cn.stemness._project.SketchModel(adata, sets, ["CSC_MARKERS"], **kw).pooled is not None


def test_projected_pca_is_the_sketchs_own(whole, tmp_path):
    from cscniche.stemness import _project as proj
    from cscniche.stemness._score import read_gmt

    adata, _ = whole
    model = proj.SketchModel(adata, read_gmt(GMT[0]), list(adata.uns["cscniche"]["stemness_sets"]),
                             methods=["mean"], stemness_method="mean", definitions=["quantile"])  # fmt: skip
    np.testing.assert_allclose(model.project(adata.X), adata.obsm["X_pca"], rtol=1e-4, atol=1e-4)


def test_cells_outside_a_sketch_get_the_right_labels_and_stemness(demo_raw, tmp_path, monkeypatch):
    monkeypatch.setattr(ondisk, "CHUNK_ROWS", 500)
    sketch = _analyse(demo_raw, tmp_path, 1200)
    assert sketch.n_obs == 1200
    table = cn.stemness.project(tmp_path / "qc.h5ad", sketch, sample="demo", **SCORE)
    n_qc = ondisk.shape(tmp_path / "qc.h5ad")[0]
    assert len(table) == n_qc and table["in_sketch"].sum() == 1200
    inside = table.set_index("cell_id").loc[sketch.obs_names]
    for c in ["stemness", "stemness_pvalue", "csc_fdr", "pearson_NOTCH", "score_WNT_BETA_CATENIN",
              "ucell_CSC_MARKERS"]:  # fmt: skip
        np.testing.assert_allclose(inside[c].to_numpy(float), sketch.obs[c].to_numpy(float), rtol=1e-6,
                                   atol=1e-9, equal_nan=True, err_msg=c)  # fmt: skip
    # sketch cells keep their own calls of every definition (issue 15 item 6)
    defs = sketch.uns["cscniche"]["csc_definitions"]
    assert defs == ["calibrated", "phenotype", "quantile"]
    for c in ["csc", *[f"csc_{d}" for d in defs]]:
        assert (inside[c].to_numpy(bool) == sketch.obs[c].to_numpy(bool)).all(), c
    out = table[~table["in_sketch"]].set_index("cell_id")
    truth = demo_raw.obs.loc[out.index]
    agree = (out["compartment"].astype(str) == truth["truth_compartment"].astype(str)).mean()
    print(f"compartment agreement outside the sketch {agree:.3f} over {len(out)} cells")
    assert agree > 0.97
    mal = out["malignant"].to_numpy(bool) & (truth["truth_compartment"] == "malignant").to_numpy()
    auc = roc_auc_score(truth["truth_stem"].to_numpy(bool)[mal], out["stemness"].to_numpy()[mal])
    recall = (out["csc"] & truth["truth_stem"]).sum() / truth["truth_stem"].sum()
    fp = (out["csc"] & ~truth["truth_stem"]).sum() / max(out["csc"].sum(), 1)
    print(f"stemness AUROC outside the sketch {auc:.4f}, CSC recall {recall:.3f}, false share {fp:.3f}")
    assert auc > 0.98 and recall > 0.8 and fp < 0.2
    for d in defs:
        assert out[f"csc_{d}"].any() and not (out[f"csc_{d}"] & ~out["malignant"]).any(), d
    assert pd.api.types.is_bool_dtype(table["csc"]) and set(table["group"]) >= {"CSC", "nonCSC"}


def test_approximate_neighbours_above_the_exact_limit_vote_like_exact_ones():
    from cscniche.stemness._project import EXACT_MAX, SketchNeighbours

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, size=(4, 10))
    labels = rng.integers(0, 4, EXACT_MAX + 1500)
    sketch = centres[labels] + rng.normal(size=(labels.size, 10))
    query = centres[np.arange(3000) % 4] + rng.normal(size=(3000, 10))
    approx, exact = SketchNeighbours(sketch, 15, seed=0), SketchNeighbours(sketch[:EXACT_MAX], 15)
    assert not approx.exact and exact.exact
    nb = approx.query(query)
    brute = NearestNeighbors(n_neighbors=15).fit(sketch).kneighbors(query, return_distance=False)
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(nb, brute, strict=True)])
    vote = np.array([np.bincount(labels[r], minlength=4).argmax() for r in nb])
    print(f"approximate neighbours: recall {recall:.3f}, vote right {np.mean(vote == np.arange(3000) % 4):.4f}")
    assert nb.shape == (3000, 15) and recall > 0.9 and np.mean(vote == np.arange(3000) % 4) > 0.99
    assert np.array_equal(nb, SketchNeighbours(sketch, 15, seed=0).query(query))  # seeded: the same again
