"""Report figures (cscniche.pl): every figure draws what its table says, placeholders say why, files are
written as PNG and PDF, byte-identical across runs."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib import pyplot as plt
from matplotlib.collections import PathCollection
from matplotlib.text import Text

from cscniche import pl as plotting
from cscniche import report as report_mod


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _tiny(n_mal=200, n_imm=120, n_str=40, spatial=True, seed=0) -> ad.AnnData:
    """A small scored sample: malignant cells (10 % CSC), three immune types, fibroblasts."""
    rng = np.random.default_rng(seed)
    n = n_mal + n_imm + n_str
    ctype = ["Malignant"] * n_mal + list(rng.choice(["T_CD8", "Macrophage", "NK"], n_imm)) + ["Fibroblast"] * n_str
    comp = ["malignant"] * n_mal + ["immune"] * n_imm + ["stromal"] * n_str
    stem = np.r_[rng.normal(0, 1, n_mal), rng.normal(-1, 0.5, n_imm + n_str)]
    mal = np.array(comp) == "malignant"
    csc = mal & (stem >= np.quantile(stem[mal], 0.9))
    obs = pd.DataFrame(
        {
            "cell_type": ctype,
            "compartment": comp,
            "malignant": mal,
            "score_CSC_MARKERS": stem + rng.normal(0, 0.2, n),
            "score_NOTCH": rng.normal(0, 1, n),
            "stemness": stem,
            "csc": csc,
            "group": np.where(csc, "CSC", np.where(mal, "nonCSC", ctype)),
            "expr_PROM1": np.where(csc, 2.0, 0.5) * rng.random(n),
            "detected_PROM1": rng.random(n) < np.where(csc, 0.8, 0.2),
            "expr_CD44": rng.random(n),
            "detected_CD44": rng.random(n) < 0.5,
        },
        index=[f"c{i}" for i in range(n)],
    )
    a = ad.AnnData(obs=obs, obsm={"X_umap": rng.normal(0, 1, (n, 2))})
    if spatial:
        a.obsm["spatial"] = rng.uniform(0, 1000, (n, 2))
    a.uns["cscniche"] = {"csc_threshold": float(np.quantile(stem[mal], 0.9))}
    return a


def _neighbours(sample="s1") -> pd.DataFrame:
    rows = []
    for hood in ("spatial", "knn"):
        for group in ("nonCSC", "CSC"):
            for t, l2, fdr, obs, exp in (
                ("Macrophage", 1.41, 0.004, 30.0, 10.0),
                ("T_CD8", -2.5, 0.0004, 1.0, 9.0),
                ("NK", 0.1, 0.6, 5.0, 4.6),
                ("B", 0.0, 1.0, 0.0, 0.0),
            ):
                rows.append(
                    {
                        "sample": sample,
                        "neighbourhood": hood,
                        "group": group,
                        "immune_type": t,
                        "observed": obs,
                        "expected": exp,
                        "log2_enrichment": l2 if group == "CSC" else -l2 / 4,
                        "fdr": fdr if group == "CSC" else 0.5,
                        "a_new_column": "x",
                        "note": "",
                    }
                )
    return pd.DataFrame(rows)


def _checkpoints(sample="s1") -> pd.DataFrame:
    rows = []
    genes = [("CD8A_like", "immune_receptor"), ("CD274", "tumour_ligand"), ("HLA-A", "antigen_presentation")]
    stats = {"CD274": (1.3, 1e-5), "HLA-A": (-1.5, 0.03), "CD8A_like": (0.05, 0.9)}
    for gene, role in genes:
        for g, frac in (("CSC", 0.9), ("nonCSC", 0.4), ("T_CD8", 0.1)):
            rows.append(
                {
                    "sample": sample,
                    "gene": gene,
                    "role": role,
                    "group": g,
                    "n_cells": 10,
                    "mean_expr": frac * 2,
                    "frac_expr": frac,
                    "log2fc_csc_vs_noncsc": stats[gene][0],
                    "p": stats[gene][1],
                    "fdr": stats[gene][1],
                }
            )
    return pd.DataFrame(rows)


def _not_blank(path) -> bool:
    img = mpimg.imread(path)
    return img.ndim == 3 and float(img[..., :3].std()) > 0.01


def test_stars_follow_the_fdr_thresholds():
    assert [plotting.stars(q) for q in (0.0001, 0.005, 0.03, 0.05, 0.5, np.nan, None)] == [
        "***",
        "**",
        "*",
        "",
        "",
        "",
        "",
    ]


def test_save_writes_png_and_pdf_byte_identical_and_closes(tmp_path):
    paths = []
    for run in ("a", "b"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        paths.append(plotting.save(fig, tmp_path / run / "fig"))
        assert not plt.fignum_exists(fig.number)
    a, b = paths
    assert [p.name for p in a] == ["fig.png", "fig.pdf"]
    for pa, pb in zip(a, b, strict=True):
        assert pa.stat().st_size > 1000
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    assert a[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a[1].read_bytes()[:5] == b"%PDF-"


def test_sample_figures_are_all_drawn_and_not_blank(tmp_path):
    figs = plotting.sample_figures(
        _tiny(), neighbours=_neighbours(), checkpoints=_checkpoints(), crosstalk_table=_crosstalk_table(), sample="s1"
    )
    assert tuple(figs) == plotting.SAMPLE_FIGURES
    assert "no crosstalk table given" not in _texts(figs["crosstalk"])
    for name, fig in figs.items():
        png, pdf = plotting.save(fig, tmp_path / name)
        assert _not_blank(png), name
        assert pdf.stat().st_size > 1000
        assert not any("no " in t and "coordinates" in t for t in _texts(fig)), name


def test_umap_has_one_panel_per_colouring():
    fig = plotting.umap(_tiny(), sample="s1")
    titles = {ax.get_title() for ax in fig.axes}
    assert {"cell type", "compartment", "stemness index", "CSC call"} <= titles
    plt.close(fig)


def test_umap_and_tissue_map_say_when_there_is_nothing_to_draw():
    a = _tiny(spatial=False)
    del a.obsm["X_umap"]
    fig = plotting.tissue_map(a, sample="s9")
    assert "no spatial coordinates in this sample (obsm['spatial'] absent)" in _texts(fig)
    assert not fig.findobj(PathCollection)
    fig2 = plotting.umap(a, sample="s9")
    assert any("no UMAP" in t for t in _texts(fig2))
    plt.close("all")


def test_tissue_map_draws_csc_on_top_at_their_coordinates():
    a = _tiny()
    fig = plotting.tissue_map(a, sample="s1")
    n_csc = int(a.obs["csc"].sum())
    assert f"CSC (n={n_csc})" in _texts(fig)
    last = fig.axes[0].collections[-1]  # drawn last, so on top
    np.testing.assert_allclose(last.get_offsets(), a.obsm["spatial"][a.obs["csc"].to_numpy()])
    for t in ("Macrophage", "T_CD8", "NK"):
        n = int(((a.obs["cell_type"] == t) & (a.obs["compartment"] == "immune")).sum())
        assert f"{t} (n={n})" in _texts(fig)
    plt.close(fig)


def test_scores_figure_has_a_panel_per_score_and_the_csc_threshold():
    a = _tiny()
    fig = plotting.score_distributions(a, sample="s1")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["CSC_MARKERS (mean: score_genes)", "NOTCH (mean: score_genes)", "stemness index"]
    a.obs["stemness_pearson"] = a.obs["stemness"]  # the panels name the method that drew the index
    labels = plotting.score_distributions(a, sample="s1").axes[2]
    assert labels.get_title() == "stemness index (pearson scores)"
    # five groups: the x labels are tilted so they do not collide
    assert all(t.get_rotation() == 30 for t in labels.get_xticklabels()) == (len(labels.get_xticklabels()) > 3)
    thr = a.uns["cscniche"]["csc_threshold"]
    assert f"CSC threshold {thr:.2f}" in _texts(fig)
    # groups with their cell counts on the x axis
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[0] == f"CSC\n(n={int(a.obs['csc'].sum())})" and "immune\n(n=120)" in labels
    plt.close(fig)


def test_marker_detection_bars_are_the_detected_fractions():
    a = _tiny()
    fig = plotting.csc_marker_detection(a, sample="s1")
    ax = fig.axes[0]
    csc = a.obs["csc"].to_numpy()
    first_group = ax.containers[0]  # CSC bars, one per marker (PROM1, CD44)
    heights = [b.get_height() for b in first_group]
    expected = [100 * a.obs.loc[csc, f"detected_{g}"].mean() for g in ("PROM1", "CD44")]
    np.testing.assert_allclose(heights, expected)
    plt.close(fig)


def test_neighbour_heatmap_values_stars_order_and_none():
    nb = _neighbours()
    nb = nb[list(reversed(nb.columns))]  # columns read by name, in any order
    fig = plotting.neighbour_heatmap(nb, sample="s1")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "knn\nCSC",
        "knn\nnonCSC",
        "spatial\nCSC",
        "spatial\nnonCSC",
    ]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["B", "Macrophage", "NK", "T_CD8"]
    cells = [t.get_text() for t in ax.texts]
    assert cells[0:4] == ["none"] * 4  # B: nothing observed nor expected
    assert cells[4] == "1.41**" and cells[8] == "0.10" and cells[12] == "-2.50***"
    plt.close(fig)


def test_neighbour_heatmap_placeholder_repeats_the_note():
    nb = pd.DataFrame(
        {"sample": ["s"], "neighbourhood": ["knn"], "group": [""], "immune_type": [np.nan], "note": ["no CSC"]}
    )
    fig = plotting.neighbour_heatmap(nb, sample="s")
    assert "no neighbour enrichment: no CSC" in _texts(fig)
    plt.close(fig)


def test_checkpoint_dotplot_sizes_colours_roles_and_marks():
    cp = _checkpoints()
    fig = plotting.checkpoint_dotplot(cp.assign(extra=1), sample="s1")
    ax, ax2 = fig.axes[0], fig.axes[1]
    genes = [t.get_text() for t in ax.get_yticklabels()]
    assert genes == ["CD274", "HLA-A", "CD8A_like"]  # tumour ligand, antigen presentation, receptor
    dots = ax.collections[0]
    assert len(dots.get_offsets()) == len(cp)
    np.testing.assert_allclose(np.sort(dots.get_sizes()), np.sort(8 + 160 * cp["frac_expr"].to_numpy()))
    bars = [b.get_width() for b in ax2.patches]
    assert bars == [1.3, -1.5, 0.05]
    marks = [t.get_text() for t in ax2.texts]
    assert "***" in marks and "*" in marks and "tumour ligand" in marks
    plt.close(fig)


def _crosstalk_table(pcol="p") -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for axis, lig, rec in (("PD-L1/PD-1", "CD274", "PDCD1"), ("CD47/SIRPA", "CD47", "SIRPA"), ("", "COL1A1", "ITGB1")):
        for src, tgt in (("CSC", "T_CD8"), ("CSC", "Macrophage"), ("nonCSC", "T_CD8")):
            rows.append(
                {
                    "ligand": lig,
                    "receptor": rec,
                    "source": src,
                    "target": tgt,
                    "score": float(rng.uniform(0, 2)),
                    pcol: float(rng.choice([1e-4, 0.01, 0.2, 0.8])),
                    "axis": axis,
                    "method": "synthetic",
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("pcol", ["p", "rank"])
def test_crosstalk_dotplot_on_a_synthetic_table(pcol):
    t = _crosstalk_table(pcol)
    fig = plotting.crosstalk(t, sample="s1")
    ax = fig.axes[0]
    rows = [x.get_text() for x in ax.get_yticklabels()]
    assert rows == ["CD47 → SIRPA", "CD274 → PDCD1"]  # sorted by axis; the axis-less pair is left out
    cols = [x.get_text() for x in ax.get_xticklabels()]
    assert cols == ["CSC → Macrophage", "CSC → T_CD8", "nonCSC → T_CD8"]
    dots = ax.collections[0]
    kept = t[t["axis"] != ""]
    assert len(dots.get_offsets()) == len(kept)
    # a black ring on the significant interactions only
    ringed = dots.get_edgecolors()[:, 3] > 0
    assert ringed.sum() == int((kept[pcol] < 0.05).sum())
    assert {"PD-L1/PD-1", "CD47/SIRPA", f"ring: {pcol} < 0.05", f"{pcol} ≤ 1e-4"} <= set(_texts(fig))
    plt.close(fig)


def test_crosstalk_keeps_the_top_interactions_and_handles_missing_columns():
    t = _crosstalk_table()
    fig = plotting.crosstalk(t, top=2)
    assert len(fig.axes[0].collections[0].get_offsets()) == 2
    best = t[t["axis"] != ""].nsmallest(1, "p")
    labels = [x.get_text() for x in fig.axes[0].get_yticklabels()]
    assert f"{best['ligand'].iat[0]} → {best['receptor'].iat[0]}" in labels
    fig2 = plotting.crosstalk(t.drop(columns=["score"]))
    assert "no checkpoint-axis crosstalk to show" in _texts(fig2)
    note = pd.DataFrame([{"ligand": "", "receptor": "", "source": "", "target": "", "score": np.nan, "p": np.nan,
                          "axis": "", "note": "no immune cells"}])  # fmt: skip
    assert "no crosstalk: no immune cells" in _texts(plotting.crosstalk(pd.concat([note, note])))
    plt.close("all")


def _cohort_cells() -> pd.DataFrame:
    frames = []
    for s, seed in (("s1", 0), ("s2", 1)):
        a = _tiny(seed=seed)
        frames.append(a.obs.assign(sample=s, n_genes=800 + seed, total_counts=3000.0, pct_counts_mt=2.0))
    return pd.concat(frames, ignore_index=True)


def test_cohort_figures_show_every_sample():
    cells = _cohort_cells()
    nb = pd.concat([_neighbours("s1"), _neighbours("s2")])
    cp = pd.concat([_checkpoints("s1"), _checkpoints("s2")])
    figs = plotting.cohort_figures(cells, neighbours=nb, checkpoints=cp)
    assert tuple(figs) == plotting.COHORT_FIGURES
    comp = _texts(figs["composition"])
    for s in ("s1", "s2"):
        sub = cells[cells["sample"] == s]
        assert f"{int(sub['csc'].sum())}/{int(sub['malignant'].sum())}" in comp
    heat = figs["checkpoints"].axes[0]
    assert [t.get_text() for t in heat.get_yticklabels()] == ["s1", "s2"]
    assert "1.30***" in [t.get_text() for t in heat.texts]
    assert {"knn neighbourhood", "spatial neighbourhood"} <= set(_texts(figs["neighbours"]))
    plt.close("all")


def test_qc_figures():
    qc = pd.DataFrame(
        {
            "sample": ["s1", "s2"],
            "n_cells_in": [400, 380],
            "removed_low_genes": [30, 5],
            "removed_low_counts": [10, 2],
            "removed_high_mt": [0, 20],
            "n_cells_out": [360, 353],
            "min_genes": [200, 200],
            "min_counts": [500, 500],
            "max_pct_mt": [20, 20],
        }
    )
    cov = pd.DataFrame(
        {"sample": ["s1", "s2"], "signature": ["NOTCH", "NOTCH"], "fraction_present": [1.0, 0.4], "missing": ["", "X"]}
    )
    figs = plotting.qc_figures(qc, cells=_cohort_cells(), coverage=cov)
    assert tuple(figs) == plotting.QC_FIGURES
    bars = figs["qc_cells"].axes[0].containers
    assert [b.get_height() for b in bars[-1]] == [360, 353]
    assert {"100%", "40%"} <= set(_texts(figs["signature_coverage"]))
    plt.close("all")


def test_qc_cells_shows_each_cell_type_and_marks_a_type_mostly_removed():
    qc = pd.DataFrame(
        {
            "sample": ["wu", "wu", "wu", "mo"],
            "cell_type": ["all", "T-cells", "Cancer", "all"],
            "n_cells_in": [240, 116, 124, 300],
            "removed_low_genes": [0, 0, 0, 3],
            "removed_low_counts": [90, 90, 0, 5],
            "removed_high_mt": [0, 0, 0, 0],
            "doublets": [2, 0, 2, 4],
            "n_cells_out": [148, 26, 122, 288],
        }
    )
    fig = plotting.qc_cells(qc)
    left, right = fig.axes[:2]
    assert [t.get_text() for t in left.get_xticklabels()] == ["wu", "mo"]  # the per-sample rows only
    assert [b.get_height() for b in left.containers[-1]] == [148, 288]
    ticks = right.get_yticklabels()
    assert [t.get_text() for t in ticks] == ["wu: T-cells (n=116)", "wu: Cancer (n=124)"]
    assert ticks[0].get_color() == "#d62728" and ticks[1].get_color() != "#d62728"  # red: more than half removed
    assert {"78", "22", "98"} <= {t.get_text() for t in right.texts}  # % low counts, % kept of T cells and cancer
    plt.close("all")


def test_qc_cells_of_a_large_cohort_stays_a_readable_size():
    # 40 samples x 15 cell types drew a 100 x 114 inch figure (45 s to save, 2.1 GB): samples become rows of a
    # table, and only the 40 sample / type rows losing the largest share of their cells are drawn
    rows = []
    for i in range(40):
        rows.append({"sample": f"s{i:02d}", "cell_type": "all", "n_cells_in": 2500, "removed_low_genes": i,
                     "doublets": 3, "n_cells_out": 2497 - i})  # fmt: skip
        for t in range(15):
            lost = 19 if (i, t) == (7, 3) else t % 5  # one type loses 19 of its 20 cells
            rows.append({"sample": f"s{i:02d}", "cell_type": f"type{t}", "n_cells_in": 20, "removed_low_genes": lost,
                         "doublets": 0, "n_cells_out": 20 - lost})  # fmt: skip
    fig = plotting.qc_cells(pd.DataFrame(rows))
    w, h = fig.get_size_inches()
    assert w < 20 and h < 16, (w, h)
    left, right = fig.axes[:2]
    assert [t.get_text() for t in left.get_yticklabels()] == [f"s{i:02d}" for i in range(40)]
    assert "2,497" in {t.get_text() for t in left.texts} and "2,458" in {t.get_text() for t in left.texts}
    ticks = right.get_yticklabels()
    assert len(ticks) == 40 and "the 40 of 600" in right.get_title()
    worst = next(t for t in ticks if t.get_text() == "s07: type3 (n=20)")
    assert worst.get_color() == "#d62728"  # the type losing 95 % is drawn, in red
    shown = [t.get_text().split(": ")[1].split(" ")[0] for t in ticks if t is not worst]
    assert set(shown) <= {"type4", "type9", "type14"}  # the others lose 20 %, the largest shares after s07's
    plt.close("all")


def test_software_versions_and_config(tmp_path):
    import scanpy

    report = report_mod.software_report(
        {"seed": 0, "qc": {"min_genes": np.int64(200)}, "note": "<b>"}, packages=["scanpy", "no-such-package-xyz"]
    )
    v = report["versions"].set_index("package")["version"]
    assert v["scanpy"] == scanpy.__version__
    assert v["no-such-package-xyz"] == "not installed"
    assert "python" in v.index
    assert yaml.safe_load(report["config"]) == {"seed": 0, "qc": {"min_genes": 200}, "note": "<b>"}
    assert "&lt;b&gt;" in report["html"] and "<b>" not in report["html"].split("<pre>")[1]


def test_malignant_compartment_cells_outside_the_malignant_set_are_shown_as_unconfirmed():
    a = _tiny()
    unconfirmed = (a.obs["compartment"] == "malignant") & ~a.obs["csc"]
    unconfirmed &= np.arange(a.n_obs) % 4 == 0
    a.obs.loc[unconfirmed, "malignant"] = False
    fig = plotting.tissue_map(a, sample="s1")
    assert f"unconfirmed malignant (n={int(unconfirmed.sum())})" in _texts(fig)
    fig = plotting.score_distributions(a, sample="s1")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert f"unconfirmed malignant\n(n={int(unconfirmed.sum())})" in labels
    plt.close("all")


def _five_patient_neighbours() -> pd.DataFrame:
    """Five patients, one sample each: Macrophage enriched around CSC in every patient (log2 0.8-1.2), NK not."""
    frames = []
    for i, shift in enumerate((-0.2, -0.1, 0.0, 0.1, 0.2)):
        t = _neighbours(f"s{i}")
        t["definition"] = "phenotype"
        t.loc[t["immune_type"] == "Macrophage", "log2_enrichment"] = 1.0 + shift
        t.loc[t["immune_type"] == "NK", "log2_enrichment"] = shift * 3
        cont = t[(t["group"] == "CSC") & (t["immune_type"] == "Macrophage")].assign(
            definition="continuous", group="stemness", log2_enrichment=np.nan, rho=0.3 + shift
        )
        frames += [t, cont]
    return pd.concat(frames, ignore_index=True)


def test_forest_plot_draws_every_patient_and_the_test_over_patients():
    from cscniche.cohort import _statistics as st

    nb = _five_patient_neighbours()
    eff, test = st.neighbour_effects(nb, {f"s{i}": f"P{i}" for i in range(5)})
    fig = plotting.forest(eff, test, keys=["neighbourhood", "immune_type"], effect="effect",
                          xlabel="log2 enrichment", title="neighbours")  # fmt: skip
    ax = next(a for a in fig.axes if a.get_title() == "definition: phenotype")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "spatial · Macrophage" in labels and "knn · NK" in labels
    y = labels.index("spatial · Macrophage")
    grey = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets()) == 5]
    xs = sorted(float(x) for c in grey for x, yy in c.get_offsets() if yy == y)
    assert xs == pytest.approx([0.8, 0.9, 1.0, 1.1, 1.2])  # one grey dot per patient, at its effect
    row = test[
        (test.definition == "phenotype") & (test.neighbourhood == "spatial") & (test.immune_type == "Macrophage")
    ]
    row = row.iloc[0]
    assert row["n_patients"] == 5 and row["p"] < 0.01 and row["ci_low"] > 0.5
    margin = [t.get_text() for t in ax.texts]
    assert any(m.startswith("n=5 p=") and m.endswith("*") for m in margin)  # significant over patients
    # rows are ordered by the mean effect: Macrophage (mean 1.0) above NK (mean 0)
    assert labels.index("spatial · Macrophage") > labels.index("spatial · NK")
    assert ax.get_xlabel() == "log2 enrichment"
    cont = [a for a in fig.axes if a.get_title() == "definition: continuous"]
    assert len(cont) == 1 and cont[0].get_xlabel() == "spearman_rho (per patient)"
    empty = plotting.forest(eff.iloc[:0], test, keys=["immune_type"], effect="effect", xlabel="", title="t")
    assert "no per-patient effect" in " ".join(_texts(empty))
    plt.close("all")


def test_burden_scatter_one_dot_per_patient():
    per = pd.DataFrame({"patient": [f"P{i}" for i in range(6)], "csc_fraction:phenotype": np.linspace(0, 0.5, 6),
                        "share:Macrophage": np.linspace(0.01, 0.2, 6), "share:NK": [0.0] * 6})  # fmt: skip
    test = pd.DataFrame([
        {"burden": "csc_fraction", "definition": "phenotype", "immune_type": "Macrophage", "rho": 1.0, "p": 0.003,
         "n_patients": 6},
        {"burden": "csc_fraction", "definition": "phenotype", "immune_type": "NK", "rho": np.nan, "p": np.nan,
         "n_patients": 6},
    ])  # fmt: skip
    fig = plotting.burden_scatter(per, test)
    assert len(fig.axes) == 1  # NK has no share in any patient: no panel
    assert "Macrophage\nrho=1.00 p=0.003 (n=6)" in [fig.axes[0].get_title()]
    assert len(fig.axes[0].collections[0].get_offsets()) == 6
    plt.close("all")
