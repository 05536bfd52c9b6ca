"""The end-of-run summary (cscniche.summary): counts per sample and the warnings that change the reading."""

from __future__ import annotations

import pandas as pd

from cscniche.summary import format_summary, run_summary


def _write(d, name, rows):
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(d / name, sep="\t", index=False)


def _results(tmp_path):
    r = tmp_path / "results"
    _write(r / "wu", "qc.tsv", [
        {"sample": "wu", "cell_type": "all", "n_cells_in": 1564, "n_cells_out": 1560, "doublets": 2, "note": ""},
        {"sample": "wu", "cell_type": "T-cells", "n_cells_in": 116, "n_cells_out": 26, "doublets": 0,
         "note": "QC removed 78% of T-cells (116 -> 26)"},
    ])  # fmt: skip
    _write(r / "wu", "stemness_summary.tsv", [{"sample": "wu", "n_cells": 1560, "n_malignant": 120, "n_csc": 0,
                                                "csc_fraction": 0.0, "csc_rule": "fdr"}])  # fmt: skip
    _write(r / "wu", "signature_coverage.tsv", [
        {"sample": "wu", "signature": "NOTCH", "n_genes": 10, "n_present": 10, "fraction_present": 1.0},
        {"sample": "wu", "signature": "WNT", "n_genes": 10, "n_present": 6, "fraction_present": 0.6},
    ])  # fmt: skip
    (r / "wu" / "scored.h5ad").write_bytes(b"")
    _write(r / "mo", "qc.tsv", [{"sample": "mo", "cell_type": "all", "n_cells_in": 500, "n_cells_out": 480,
                                 "doublets": 9, "note": "no MT- genes in the data: the mitochondrial filter"}])  # fmt: skip
    _write(r / "mo", "stemness_summary.tsv", [{"sample": "mo", "n_malignant": 200, "n_csc": 30, "csc_fraction": 0.15,
                                               "csc_rule": "fdr", "n_csc_fdr": 30, "n_csc_quantile": 0}])  # fmt: skip
    (r / "mo" / "scored.h5ad").write_bytes(b"")
    return r


def test_summary_counts_and_warnings(tmp_path):
    r = _results(tmp_path)
    sheet = pd.DataFrame({"sample": ["wu", "mo", "late"], "path": ["a", "b", "c"], "meta_site": ["breast", "pdac", ""]})
    t = run_summary(sheet, r).set_index("sample")
    assert t.loc["wu", "n_cells_kept"] == 1560 and t.loc["wu", "n_malignant"] == 120 and t.loc["wu", "n_csc"] == 0
    wu = t.loc["wu", "warnings"]
    assert "0 CSC (rule: fdr)" in wu and "QC removed 78% of T-cells (116 -> 26)" in wu
    assert "signature WNT: only 6/10 genes in the data" in wu and "NOTCH" not in wu
    assert t.loc["mo", "n_csc_fdr"] == 30 and t.loc["mo", "n_csc_quantile"] == 0
    assert "0 CSC by the definition 'quantile'" in t.loc["mo", "warnings"] and "no MT- genes" in t.loc["mo", "warnings"]
    assert t.loc["late", "status"] == "not run" and t.loc["wu", "status"] == "done"
    assert t["meta_site"].tolist() == ["breast", "pdac", ""]
    text = format_summary(t.reset_index(), results="results", report="report.html")
    assert "  wu: 1,560 of 1,564 cells kept by QC (2 doublets), 120 malignant, 0 CSC (0.0% of malignant)\n" in text
    mo = "  mo: 480 of 500 cells kept by QC (9 doublets), 200 malignant, 30 CSC (15.0% of malignant); by definition"
    assert f"{mo}: fdr 30, quantile 0\n" in text
    assert "    WARNING: 0 CSC (rule: fdr)" in text and "[not run]" in text
    assert "results/summary.tsv" in text and "Report: report.html" in text


def test_summary_of_nothing_yet(tmp_path):
    t = run_summary(["s1"], tmp_path / "results")
    assert t.loc[0, "status"] == "not run" and t.loc[0, "warnings"] == ""
    assert "s1: - of - cells kept" in format_summary(t, ok=False)
