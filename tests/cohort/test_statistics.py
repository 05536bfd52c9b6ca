"""Cross-patient statistics: per-patient effects first, planted effects found across patients, unplanted not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cscniche.cohort import _statistics as cohort


def _nb_tables(n_patients=6, samples_per_patient=2, seed=0):
    """Per-sample neighbour tables: Macrophage enriched around CSC in every patient, B random around 0."""
    rng = np.random.default_rng(seed)
    rows, sheet = [], []
    for p in range(n_patients):
        patient_shift = rng.normal(0, 0.3)
        for s in range(samples_per_patient):
            sample = f"P{p}_s{s}"
            sheet.append({"sample": sample, "patient": f"P{p}"})
            for t, eff in (("Macrophage", 1.2 + patient_shift), ("B", rng.normal(0, 0.5))):
                for group in ("CSC", "nonCSC"):
                    rows.append(
                        {
                            "sample": sample,
                            "neighbourhood": "spatial",
                            "group": group,
                            "immune_type": t,
                            "log2_enrichment": eff + rng.normal(0, 0.2) if group == "CSC" else -0.1,
                            "note": "",
                        }
                    )
    return pd.DataFrame(rows), pd.DataFrame(sheet)


def test_planted_niche_found_across_patients_unplanted_not():
    nb, sheet = _nb_tables()
    eff, test = cohort.neighbour_effects(nb, cohort.patient_of(sheet))
    assert len(eff) == 12 and set(eff["n_samples"]) == {2}  # 6 patients x 2 types, samples averaged
    t = test.set_index("immune_type")
    assert t.loc["Macrophage", "n_patients"] == 6
    assert t.loc["Macrophage", "fdr"] < 0.05 and t.loc["Macrophage", "n_positive"] == 6
    assert t.loc["Macrophage", "p_wilcoxon"] == pytest.approx(2 / 2**6)
    x = eff[eff.immune_type == "Macrophage"]["log2_enrichment" if "log2_enrichment" in eff else "effect"]
    half = 2.5706 * x.std(ddof=1) / np.sqrt(6)  # t(0.975, 5)
    assert (
        t.loc["Macrophage", "ci_low"] == pytest.approx(x.mean() - half, rel=1e-3) and t.loc["Macrophage", "ci_low"] > 0
    )
    assert t.loc["B", "fdr"] > 0.05


def test_patients_are_the_replicates_not_cells_or_samples():
    """One patient with many samples does not outweigh the others: its samples are averaged first."""
    nb, sheet = _nb_tables(n_patients=2, samples_per_patient=1)
    extra = nb[nb["sample"] == "P0_s0"].copy()
    many = pd.concat([extra.assign(sample=f"P0_x{i}") for i in range(20)])
    sheet = pd.concat([sheet, pd.DataFrame({"sample": [f"P0_x{i}" for i in range(20)], "patient": "P0"})])
    eff, test = cohort.neighbour_effects(pd.concat([nb, many]), cohort.patient_of(sheet))
    assert test["n_patients"].unique().tolist() == [2]
    assert eff.loc[eff.patient == "P0", "n_samples"].unique().tolist() == [21]


def test_missing_patient_means_own_patient_and_one_patient_gives_no_test():
    sheet = pd.DataFrame({"sample": ["a", "b"], "patient": ["", "P1"]})
    assert cohort.patient_of(sheet) == {"a": "a", "b": "P1"}
    nb, _ = _nb_tables(n_patients=1, samples_per_patient=2)
    _, test = cohort.neighbour_effects(nb, {"P0_s0": "P0", "P0_s1": "P0"})
    assert test["p"].isna().all() and test["note"].str.contains("no test across patients").all()


def test_noted_rows_are_left_out():
    nb, sheet = _nb_tables(n_patients=3)
    nb.loc[nb["sample"] == "P0_s0", "note"] = "no immune cells"
    eff, _ = cohort.neighbour_effects(nb, cohort.patient_of(sheet))
    assert eff.loc[eff.patient == "P0", "n_samples"].unique().tolist() == [1]


def _pseudobulk(n_patients=5, seed=0):
    """Per-sample pseudobulk: CD274 4x in CSC of every patient, CD47 unchanged; one patient lacks CSC."""
    rng = np.random.default_rng(seed)
    rows, sheet = [], []
    for p in range(n_patients):
        sample = f"s{p}"
        sheet.append({"sample": sample, "patient": f"P{p}"})
        groups = ("CSC", "nonCSC", "Macrophage") if p < n_patients - 1 else ("nonCSC", "Macrophage")
        for g in groups:
            lib = rng.integers(200_000, 400_000) if g == "CSC" else rng.integers(1_000_000, 3_000_000)
            for gene, fold in (("CD274", 4.0), ("CD47", 1.0)):
                rate = 50e-6 * (fold if g == "CSC" else 1.0) * np.exp(rng.normal(0, 0.1))
                rows.append(
                    {
                        "sample": sample,
                        "group": g,
                        "gene": gene,
                        "role": "tumour_ligand",
                        "n_cells": 100,
                        "counts": float(rng.poisson(rate * lib)),
                        "library_size": float(lib),
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(sheet)


def test_pseudobulk_paired_test_over_patients():
    pb, sheet = _pseudobulk()
    eff, test, summed = cohort.pseudobulk_effects(pb, cohort.patient_of(sheet))
    t = test.set_index("gene")
    assert t.loc["CD274", "n_patients"] == 4  # the patient without CSC cannot be paired
    assert t.loc["CD274", "mean_effect"] == pytest.approx(2.0, abs=0.3)  # log2(4)
    assert t.loc["CD274", "fdr"] < 0.05 and t.loc["CD47", "fdr"] > 0.05
    # sums are per patient x group: CPM recomputed from the raw sums
    row = summed[(summed.patient == "P0") & (summed.group == "CSC") & (summed.gene == "CD274")].iloc[0]
    src = pb[(pb["sample"] == "s0") & (pb.group == "CSC") & (pb.gene == "CD274")].iloc[0]
    assert row["log2_cpm"] == pytest.approx(np.log2(src["counts"] / src["library_size"] * 1e6 + 1))
    assert "Macrophage" in set(summed["group"])
    assert eff["log2fc_csc_vs_noncsc"].notna().sum() == 8


def test_cohort_statistics_returns_every_table():
    nb, sheet = _nb_tables(n_patients=2, samples_per_patient=1)
    pb, _ = _pseudobulk(n_patients=2)
    pb["sample"] = pb["sample"].map({"s0": "P0_s0", "s1": "P1_s0"})
    ct = pd.DataFrame(
        {
            "sample": ["P0_s0", "P1_s0"],
            "ligand": "CD274",
            "receptor": "PDCD1",
            "target": "T_CD8",
            "axis": "PD-L1/PD-1",
            "score_diff": [0.4, 0.5],
            "note": "",
        }
    )
    out = cohort.cohort_statistics(neighbours=nb, pseudobulk=pb, crosstalk=ct, samples=sheet)
    assert set(out) == {
        "immune_neighbours_patients",
        "immune_neighbours_test",
        "crosstalk_patients",
        "crosstalk_test",
        "checkpoints_pseudobulk_patients",
        "checkpoints_pseudobulk_test",
        "checkpoints_pseudobulk_groups",
    }
    assert out["crosstalk_test"]["n_patients"].tolist() == [2]
    assert out["crosstalk_test"]["note"].iloc[0].startswith("only 2 patients")


def test_zero_variance_effects_do_not_give_p_zero():
    """Every patient with the same non-zero effect: no t statistic; p is the sign test's, never 0."""
    row = cohort._one_test(np.full(6, 0.7))
    assert row["p"] == pytest.approx(2 / 2**6) and row["p"] == row["p_sign"]
    assert "same effect" in row["note"]
    assert cohort._one_test(np.zeros(4))["p"] == 1.0


def test_left_out_samples_are_named_with_their_reason_and_definitions_stay_apart():
    nb, sheet = _nb_tables(n_patients=5, samples_per_patient=1)
    nb["definition"] = "calibrated"
    other = nb.assign(definition="quantile", log2_enrichment=0.0)
    noted = nb[nb["sample"] == "P0_s0"].head(1).assign(immune_type="", log2_enrichment=np.nan, note="no CSC")
    nb = pd.concat([nb[nb["sample"] != "P0_s0"], noted, other], ignore_index=True)
    nb["note"] = nb["note"].where(nb["note"] != "", "transcriptional neighbours, not spatial")  # informational
    eff, test = cohort.neighbour_effects(nb, cohort.patient_of(sheet))
    t = test.set_index(["definition", "immune_type"])
    cal = t.loc[("calibrated", "Macrophage")]
    assert cal["n_patients"] == 4 and cal["samples_left_out"] == "P0_s0 (no CSC)"
    assert cal["n_positive"] == 4 and cal["n_samples"] == 4
    q = t.loc[("quantile", "Macrophage")]
    assert q["n_patients"] == 5 and q["samples_left_out"] == "" and q["p"] == 1.0


def _burden_cells(n_patients=8, seed=0):
    """Cells of one sample per patient: CSC fraction rises with the macrophage share; B cells independent."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        frac = 0.05 + 0.05 * p
        n_mac = int(20 + 15 * p + rng.integers(0, 5))
        n_b = int(rng.integers(10, 60))
        mal_csc = rng.random(200) < frac
        for i in range(200):
            rows.append((f"s{p}", "Malignant", "malignant", True, float(mal_csc[i]) + rng.normal(), mal_csc[i]))
        rows += [(f"s{p}", "Macrophage", "immune", False, np.nan, False)] * n_mac
        rows += [(f"s{p}", "B", "immune", False, np.nan, False)] * n_b
    rows += [("s_empty", "B", "immune", False, np.nan, False)] * 30  # no malignant cells
    df = pd.DataFrame(rows, columns=["sample", "cell_type", "compartment", "malignant", "stemness", "csc_calibrated"])
    df["csc"] = df["csc_calibrated"]
    return df, {**{f"s{p}": f"P{p}" for p in range(n_patients)}, "s_empty": "P_empty"}


def test_csc_burden_associates_with_immune_share_over_patients():
    cells, patients = _burden_cells()
    per, test = cohort.csc_burden_immune(cells, patients)
    assert list(test.columns) == cohort.BURDEN_COLUMNS and len(per) == 9
    t = test.set_index(["burden", "definition", "immune_type"])
    mac = t.loc[("csc_fraction", "calibrated", "Macrophage")]
    assert mac["n_patients"] == 8 and mac["rho"] > 0.8 and mac["fdr"] < 0.05
    assert mac["samples_left_out"] == "s_empty (no malignant cells)"
    assert t.loc[("csc_fraction", "calibrated", "B"), "p"] > 0.05
    assert t.loc[("mean_stemness", "continuous", "Macrophage"), "rho"] > 0.5
    z = cells.copy()
    z["stemness"] = z["stemness"] - z.groupby("sample")["stemness"].transform("mean")  # per-sample z-scored
    _, tz = cohort.csc_burden_immune(z, patients)
    ms = tz[tz.burden == "mean_stemness"]
    assert ms["p"].isna().all() and ms["note"].str.contains("standardised within each sample").all()
    few, _ = _burden_cells(n_patients=3)
    _, t3 = cohort.csc_burden_immune(few, {f"s{p}": f"P{p}" for p in range(3)} | {"s_empty": "P_empty"})
    assert t3["p"].isna().all() and t3["note"].str.contains("no test across patients").all()


def test_pseudobulk_leaves_out_a_patient_with_one_csc():
    """A single CSC is no pseudobulk (the real run paired Wu's and Moncada's one calibrated CSC)."""
    pb, sheet = _pseudobulk()
    one = (pb["sample"] == "s0") & (pb["group"] == "CSC")
    pb.loc[one, "n_cells"] = 1
    eff, test, _ = cohort.pseudobulk_effects(pb, cohort.patient_of(sheet))
    t = test.set_index("gene")
    assert t.loc["CD274", "n_patients"] == 3  # 4 before, less the patient whose CSC group is one cell
    assert "s0 (fewer than 3 CSC or non-CSC cells)" in t.loc["CD274", "samples_left_out"]


def test_vectorised_tests_equal_the_per_row_scipy_tests():
    """``_tests`` (all rows at once) gives the numbers and notes of ``_one_test`` (scipy's ttest_1samp, exact
    wilcoxon and binomtest, one row at a time) on groups of 1-12 patients with ties, zeros and constant effects."""
    rng = np.random.default_rng(3)
    groups = []
    for i in range(400):
        n = int(rng.integers(1, 13))
        kind = i % 5
        if kind == 0:
            x = np.round(rng.normal(0.3, 1, n), 1)  # ties
        elif kind == 1:
            x = np.where(rng.random(n) < 0.4, 0.0, rng.normal(0, 1, n))  # zeros
        elif kind == 2:
            x = np.full(n, float(rng.choice([0.0, 0.7, -1.2])))  # constant
        else:
            x = rng.normal(rng.normal(0, 1), 1, n)
        groups.append(x)
    codes = np.concatenate([np.full(len(x), i) for i, x in enumerate(groups)])
    shuffle = rng.permutation(len(codes))
    got = cohort._tests(np.concatenate(groups)[shuffle], codes[shuffle], len(groups))
    assert (got["n_patients"] == 1).sum() > 10 and (got["note"].str.contains("same effect")).sum() > 20
    for i, x in enumerate(groups):
        ref = cohort._one_test(x)
        for col in ("mean_effect", "ci_low", "ci_high", "sd_effect", "p", "p_wilcoxon", "p_sign"):
            assert got.loc[i, col] == pytest.approx(ref[col], rel=1e-9, abs=1e-15, nan_ok=True), (i, col, x)
        for col in ("n_patients", "n_positive", "n_negative", "note", "test"):
            assert got.loc[i, col] == ref[col], (i, col)


def test_categorical_keys_with_unused_categories_give_the_string_keys_rows():
    """Keys read as categoricals with categories no row uses (e.g. a subset of a table) are tested like strings."""
    rng = np.random.default_rng(0)
    eff = pd.DataFrame({
        "patient": np.repeat([f"P{i}" for i in range(6)], 3),
        "sample": np.repeat([f"P{i}_s" for i in range(6)], 3),
        "immune_type": ["Macrophage", "T cell", "NK"] * 6,
        "effect": rng.normal(0.5, 1, 18),
    })  # fmt: skip
    cat = eff.assign(
        immune_type=pd.Categorical(eff["immune_type"], categories=["B cell", "Macrophage", "NK", "T cell"])
    )
    plain = cohort.across_patients(
        cohort.per_patient(eff, {s: s[:2] for s in eff["sample"]}, keys=["immune_type"], value="effect"),
        keys=["immune_type"], value="effect",
    )  # fmt: skip
    got = cohort.across_patients(
        cohort.per_patient(cat, {s: s[:2] for s in cat["sample"]}, keys=["immune_type"], value="effect"),
        keys=["immune_type"], value="effect",
    )  # fmt: skip
    assert got["immune_type"].astype(str).tolist() == plain["immune_type"].tolist() == ["Macrophage", "NK", "T cell"]
    pd.testing.assert_frame_equal(got.assign(immune_type=got["immune_type"].astype(str)), plain, check_dtype=False)
