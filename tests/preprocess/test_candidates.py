"""CNV candidates from any lab's labels, with the CNV-high fallback when no label names a candidate."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_labels

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def _load():
    try:
        from cscniche.preprocess import candidates  # after the split into subpackages
    except ImportError:  # today cscniche/preprocess.py (a module) shadows the cscniche/preprocess/ folder
        path = ROOT / "src/cscniche/preprocess/candidates.py"
        spec = importlib.util.spec_from_file_location("cscniche_preprocess_candidates", path)
        candidates = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = candidates
        spec.loader.exec_module(candidates)
    return candidates


cand = _load()


def _sample(n_immune=300, n_stromal=200, n_other=500, n_high_other=100, n_high_immune=10, seed=0):
    """Compartments and CNV scores: 'other' cells, the first n_high_other of them CNV-high (score 1.0 vs 0.1)."""
    comp = np.array(["immune"] * n_immune + ["stromal"] * n_stromal + ["other"] * n_other, dtype=object)
    rng = np.random.default_rng(seed)
    score = rng.uniform(0.0, 0.2, comp.size)
    other = np.flatnonzero(comp == "other")
    score[other[:n_high_other]] = rng.uniform(0.8, 1.2, n_high_other)
    score[np.flatnonzero(comp == "immune")[:n_high_immune]] = 1.0  # reference cells above threshold stay out
    return comp, score


def test_labels_name_candidates():
    comp = np.array(["malignant"] * 40 + ["candidate"] * 60 + ["immune"] * 50 + ["stromal"] * 30 + ["other"] * 20)
    score = np.zeros(comp.size)  # ignored: the labels decide the candidate set
    res = cand.choose_candidates(comp, score, threshold=0.5)
    assert res.rule == "labels"
    assert res.warning is None
    assert res.n_candidates == 100
    assert res.candidate[:100].all() and not res.candidate[100:].any()
    assert res.counts["n_label_candidates"] == 100 and res.counts["n_eligible"] == 120


def test_fallback_takes_the_cnv_high_population_with_a_warning():
    comp, score = _sample()
    res = cand.choose_candidates(comp, score, threshold=0.5, sample="S1")
    assert res.rule == "cnv_fallback"
    assert res.n_candidates == 100
    assert (comp[res.candidate] == "other").all()  # the 10 CNV-high immune cells are not candidates
    assert res.counts["n_eligible"] == 500 and res.counts["n_cnv_high_eligible"] == 100
    assert res.counts["cnv_high_share"] == pytest.approx(0.2)
    assert res.warning.startswith("sample S1: no label names a malignant or candidate cell type")
    assert "100 CNV-high cells of 500" in res.warning and "20.0%" in res.warning


def test_too_few_cnv_high_cells_are_no_population():
    comp, score = _sample(n_high_other=15)  # 15 < min_cells 20, though 3 % of 500
    res = cand.choose_candidates(comp, score, threshold=0.5)
    assert res.rule == "none" and res.n_candidates == 0
    assert "(15 of 500, 3.0%; need >= 20 cells and >= 5%)" in res.warning


def test_too_small_a_share_is_no_population():
    comp, score = _sample(n_other=2000, n_high_other=60)  # 60 >= 20 cells but 3 % < 5 %
    res = cand.choose_candidates(comp, score, threshold=0.5)
    assert res.rule == "none" and res.n_candidates == 0
    assert res.counts["n_cnv_high_eligible"] == 60
    # the same cells pass with a looser share
    loose = cand.choose_candidates(comp, score, threshold=0.5, min_fraction=0.02)
    assert loose.rule == "cnv_fallback" and loose.n_candidates == 60


def test_threshold_is_strict_and_nan_scores_are_not_high():
    comp = np.array(["other"] * 30)
    score = np.array([0.5] * 10 + [0.6] * 20)
    score[0] = np.nan
    res = cand.choose_candidates(comp, score, threshold=0.5, min_cells=20, min_fraction=0.5)
    assert res.rule == "cnv_fallback" and res.n_candidates == 20  # 0.5 is not above 0.5; NaN is not high


def test_no_calibrated_cnv_gives_no_candidates_and_says_so():
    comp, score = _sample()
    for kwargs in ({"cnv_score": None, "threshold": 0.5}, {"cnv_score": score, "threshold": None},
                   {"cnv_score": np.full(score.size, np.nan), "threshold": 0.5},
                   {"cnv_score": score, "threshold": float("nan")}):  # fmt: skip
        res = cand.choose_candidates(comp, **kwargs)
        assert res.rule == "none" and res.n_candidates == 0
        assert "no calibrated CNV score" in res.warning


def test_bad_inputs():
    comp, score = _sample()
    with pytest.raises(ValueError, match="cnv_score has 999 values for 1000 cells"):
        cand.choose_candidates(comp, score[:-1], threshold=0.5)
    with pytest.raises(ValueError, match="min_cells"):
        cand.choose_candidates(comp, score, threshold=0.5, min_cells=0)


def test_label_compartments_with_the_shipped_rules():
    labels = ["Hepatocytes", "Cancer clone A", "Tuft cells", "T/NK", "CAFs", "RBCs", "Normal Epithelial"]
    got = list(cand.label_compartments(labels))
    assert got == ["candidate", "malignant", "candidate", "immune", "stromal", "other", "other"]
    res = cand.choose_candidates(got)
    assert res.rule == "labels" and res.n_candidates == 3


def test_read_rules_rejects_unknown_compartments(tmp_path):
    p = tmp_path / "rules.tsv"
    p.write_text("pattern\tcompartment\n\\bfoo\\b\tparenchyma\n")
    with pytest.raises(ValueError, match="unknown compartments \\['parenchyma'\\]"):
        cand.read_rules(p)


@pytest.mark.parametrize(
    ("rel", "column", "n_candidates", "n_by_origin"),
    [
        # Moncada PDAC-A: 296 cancer-clone cells + 1,429 ductal/acinar/tuft/endocrine cells for the CNV step
        ("tumour/moncada2020_pdac_a_sc.h5ad", "Cell", 1725, 1429),
        # MERFISH lung: the authors label no cancer cell; the 634 "Epithelial" cells are the CNV candidates
        ("spatial/merfish_lung_tessera.h5ad", "type", 634, 634),
        # Wu TNBC major labels: the 124 "Cancer Epithelial" cells; "Normal Epithelial" (10) stay out
        ("tumour/wu2021_tnbc_CID4465.h5ad", "celltype_major", 124, 0),
    ],
)
def test_real_label_sets(rel, column, n_candidates, n_by_origin):
    comp = cand.label_compartments(shared_labels(rel, column).to_numpy())
    res = cand.choose_candidates(comp)
    assert res.rule == "labels"
    assert res.n_candidates == n_candidates
    assert int((comp == "candidate").sum()) == n_by_origin
