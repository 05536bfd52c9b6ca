"""Statistics across patients: per-patient effects, then a test over patients (never over pooled cells).

Each sample's effect (log2 neighbour enrichment of CSC vs the within-sample permutation null, CSC-minus-
non-CSC crosstalk difference, pseudobulk checkpoint log2 fold change) is first averaged over the samples
of a patient; the patients are then the replicates. With few patients the tests have little power:
every row carries its ``n_patients``. Tests: one-sample t-test of the per-patient effects against 0
(``p``, BH-FDR ``fdr``), the exact Wilcoxon signed-rank test (``p_wilcoxon``) and the sign test
(``p_sign``, binomial). Samples without a patient in the sample sheet count as their own patient.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import false_discovery_control

log = logging.getLogger(__name__)

TEST_COLUMNS = [
    "n_patients",
    "mean_effect",
    "sd_effect",
    "n_positive",
    "n_negative",
    "p",
    "fdr",
    "p_wilcoxon",
    "p_sign",
    "test",
    "note",
]
#: pseudocount (counts per million) of the pseudobulk log2 CPM
CPM_PSEUDOCOUNT = 1.0


def patient_of(samples: pd.DataFrame) -> dict[str, str]:
    """sample -> patient from a sample sheet (columns ``sample`` and optional ``patient``); empty = the sample."""
    pat = samples["patient"] if "patient" in samples.columns else pd.Series("", index=samples.index)
    pat = pat.fillna("").astype(str)
    return {str(s): (p if p else str(s)) for s, p in zip(samples["sample"], pat, strict=True)}


def per_patient(table: pd.DataFrame, patients: dict[str, str], *, keys: list[str], value: str) -> pd.DataFrame:
    """Mean of ``value`` over the samples of each patient, per ``keys``; columns patient, keys, n_samples, value."""
    df = table.copy()
    unknown = sorted(set(df["sample"]) - set(patients))
    if unknown:
        raise ValueError(f"samples {unknown} are not in the sample sheet")
    df["patient"] = df["sample"].map(patients)
    df = df[np.isfinite(pd.to_numeric(df[value], errors="coerce"))]
    out = df.groupby(["patient", *keys], sort=True, dropna=False).agg(
        n_samples=("sample", "nunique"), **{value: (value, "mean")}
    )
    return out.reset_index()


def _one_test(x: np.ndarray) -> dict:
    n = len(x)
    row = {
        "n_patients": n,
        "mean_effect": float(np.mean(x)) if n else np.nan,
        "sd_effect": float(np.std(x, ddof=1)) if n > 1 else np.nan,
        "n_positive": int((x > 0).sum()),
        "n_negative": int((x < 0).sum()),
        "p": np.nan,
        "p_wilcoxon": np.nan,
        "p_sign": np.nan,
        "test": "one-sample t over patients; Wilcoxon signed-rank; sign",
        "note": "",
    }
    if n < 2:
        row["note"] = f"{n} patient(s): no test across patients"
        return row
    if np.ptp(x) == 0:
        row["p"] = 1.0 if x[0] == 0 else 0.0
    else:
        row["p"] = float(stats.ttest_1samp(x, 0.0).pvalue)
    nz = x[x != 0]
    row["p_wilcoxon"] = float(stats.wilcoxon(nz, method="exact").pvalue) if len(nz) else 1.0
    row["p_sign"] = float(stats.binomtest(int((nz > 0).sum()), len(nz), 0.5).pvalue) if len(nz) else 1.0
    if n < 5:
        row["note"] = f"only {n} patients: the smallest possible Wilcoxon p is {2 / 2**n:.3g}"
    return row


def across_patients(effects: pd.DataFrame, *, keys: list[str], value: str) -> pd.DataFrame:
    """Test per ``keys`` whether the per-patient ``value`` differs from 0 (columns: keys + :data:`TEST_COLUMNS`)."""
    rows = []
    for key, g in effects.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)), **_one_test(g[value].to_numpy(dtype=float))})
    out = pd.DataFrame(rows, columns=[*keys, *TEST_COLUMNS])
    ok = out["p"].notna().to_numpy()
    out["fdr"] = np.nan
    if ok.any():
        out.loc[ok, "fdr"] = false_discovery_control(out.loc[ok, "p"].to_numpy(dtype=float), method="bh")
    return out


def neighbour_effects(table: pd.DataFrame, patients: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient log2 enrichment of immune types around CSC (vs the within-sample null), and the test.

    Rows with a note (sample without malignant, CSC or immune cells) are left out of the effects.
    """
    keys = ["neighbourhood", "immune_type"]
    nb = table[(table["group"] == "CSC") & (table["note"].fillna("").astype(str) == "")]
    eff = per_patient(nb, patients, keys=keys, value="log2_enrichment")
    return eff, across_patients(eff, keys=keys, value="log2_enrichment")


def crosstalk_effects(table: pd.DataFrame, patients: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient CSC-minus-non-CSC crosstalk difference per ligand, receptor and receiver, and the test."""
    keys = ["ligand", "receptor", "target", "axis"]
    ok = table[table["note"].fillna("").astype(str) == ""].copy()
    ok["axis"] = ok["axis"].fillna("").astype(str)
    eff = per_patient(ok, patients, keys=keys, value="score_diff")
    return eff, across_patients(eff, keys=keys, value="score_diff")


def pseudobulk_effects(
    pseudobulk: pd.DataFrame, patients: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pseudobulk CSC vs non-CSC checkpoint test across patients.

    Counts and library sizes are summed per patient x group (over cells and samples); log2 CPM =
    ``log2(counts / library * 1e6 + 1)``; the per-patient effect is log2 CPM(CSC) - log2 CPM(nonCSC), tested
    over the patients that have both groups (paired). Immune groups are summed too and reported as log2 CPM.
    Returns the per-patient effects, the test, and the per-patient x group sums.
    """
    pb = pseudobulk.copy()
    pb["patient"] = pb["sample"].map(patients)
    summed = pb.groupby(["patient", "gene", "role", "group"], sort=True).agg(
        n_samples=("sample", "nunique"),
        n_cells=("n_cells", "sum"),
        counts=("counts", "sum"),
        library_size=("library_size", "sum"),
    )
    summed = summed.reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        summed["log2_cpm"] = np.log2(summed["counts"] / summed["library_size"] * 1e6 + CPM_PSEUDOCOUNT)
    wide = summed[summed["group"].isin(["CSC", "nonCSC"])].pivot_table(
        index=["patient", "gene", "role"], columns="group", values=["log2_cpm", "n_cells"], aggfunc="first"
    )
    eff = pd.DataFrame(index=wide.index)
    for g in ("CSC", "nonCSC"):
        eff[f"log2_cpm_{g}"] = wide[("log2_cpm", g)] if ("log2_cpm", g) in wide.columns else np.nan
        eff[f"n_cells_{g}"] = wide[("n_cells", g)] if ("n_cells", g) in wide.columns else np.nan
    eff["log2fc_csc_vs_noncsc"] = eff["log2_cpm_CSC"] - eff["log2_cpm_nonCSC"]
    eff = eff.reset_index()
    paired = eff.dropna(subset=["log2fc_csc_vs_noncsc"])
    test = across_patients(paired, keys=["gene", "role"], value="log2fc_csc_vs_noncsc")
    test["test"] = "paired over patients (pseudobulk log2 CPM CSC - nonCSC): t; Wilcoxon signed-rank; sign"
    return eff, test, summed


def cohort_statistics(
    *,
    neighbours: pd.DataFrame,
    pseudobulk: pd.DataFrame,
    crosstalk: pd.DataFrame,
    samples: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    """Every cross-patient table, keyed by output name (see the module docstring)."""
    patients = patient_of(samples)
    n_pat = len(set(patients.values()))
    if n_pat < 2:
        log.warning("%d patient(s) in the sample sheet: no test across patients is possible", n_pat)
    out = {}
    out["immune_neighbours_patients"], out["immune_neighbours_test"] = neighbour_effects(neighbours, patients)
    out["crosstalk_patients"], out["crosstalk_test"] = crosstalk_effects(crosstalk, patients)
    eff, test, summed = pseudobulk_effects(pseudobulk, patients)
    out["checkpoints_pseudobulk_patients"], out["checkpoints_pseudobulk_test"] = eff, test
    out["checkpoints_pseudobulk_groups"] = summed
    return out
