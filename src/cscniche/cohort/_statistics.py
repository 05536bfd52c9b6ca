"""Statistics across patients: per-patient effects, then a test over patients (never over pooled cells).

Each sample's effect (log2 neighbour enrichment of CSC vs the within-sample permutation null, CSC-minus-
non-CSC crosstalk difference, pseudobulk checkpoint log2 fold change) is first averaged over the samples
of a patient; the patients are then the replicates. With few patients the tests have little power:
every row carries its ``n_patients``. Tests: one-sample t-test of the per-patient effects against 0
(``p``, BH-FDR ``fdr``), the exact Wilcoxon signed-rank test (``p_wilcoxon``) and the sign test
(``p_sign``, binomial). Samples without a patient in the sample sheet count as their own patient.
When every patient has the same effect the t-test is undefined (zero variance): ``p`` is then the sign test's
(1 when that effect is 0) and the note says so, never p = 0. Each test row names the samples of the cohort
that gave no effect for it and why (``samples_left_out``, from the per-sample notes: no CSC, no immune
cells, ...). Tables carry a ``definition`` column (CSC definition, or ``continuous`` for stemness rows).

:func:`csc_burden_immune` is the niche answer for dissociated data: across patients, Spearman association of
CSC burden (fraction of malignant cells that are CSC, per definition; mean stemness of malignant cells) with
each immune type's share of the sample's cells.
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
    "n_samples",
    "mean_effect",
    "ci_low",
    "ci_high",
    "sd_effect",
    "n_positive",
    "n_negative",
    "p",
    "fdr",
    "p_wilcoxon",
    "p_sign",
    "test",
    "samples_left_out",
    "note",
]
#: informational note parts (the row still holds a statistic)
INFO_NOTES = ("transcriptional neighbours", "sketch of")
#: a patient enters the pseudobulk test with at least this many CSC and non-CSC cells (one cell is no pseudobulk)
MIN_GROUP_CELLS = 3
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
    grouped = df.groupby(["patient", *keys], sort=True, dropna=False, observed=True)
    out = grouped.agg(n_samples=("sample", "nunique"), **{value: (value, "mean")}).reset_index()
    # each group's samples, sorted and comma-joined (one vectorised pass: 222,000 groups in well under a second)
    pairs = pd.DataFrame({"group": grouped.ngroup().to_numpy(), "sample": df["sample"].astype(str).to_numpy()})
    pairs = pairs.drop_duplicates().sort_values(["group", "sample"], kind="stable")
    first = np.r_[True, pairs["group"].to_numpy()[1:] != pairs["group"].to_numpy()[:-1]]
    text = np.where(first, "", ",").astype(object) + pairs["sample"].to_numpy(dtype=object)
    out.insert(
        out.columns.get_loc("n_samples") + 1,
        "samples",
        np.add.reduceat(text, np.flatnonzero(first)) if len(text) else [],
    )
    return out


def blocking_note(note) -> str:
    """The part of a row's note that says why it has no statistic ('' for informational notes only)."""
    parts = [p.strip() for p in str(note if isinstance(note, str) else "").split(";")]
    return "; ".join(p for p in parts if p and not p.startswith(INFO_NOTES))


def usable(table: pd.DataFrame, value: str) -> pd.Series:
    """Rows with a finite ``value`` and no blocking note."""
    finite = np.isfinite(pd.to_numeric(table[value], errors="coerce"))
    notes = table["note"] if "note" in table else pd.Series("", index=table.index)
    return finite & (notes.map(blocking_note) == "")


def reasons_by_sample(table: pd.DataFrame, by: list[str]) -> dict:
    """(sample, *by) -> the first blocking note of that sample's rows (why it gave no effect)."""
    out = {}
    notes = table["note"].map(blocking_note) if "note" in table else pd.Series("", index=table.index)
    for key, n in zip(table[["sample", *by]].itertuples(index=False, name=None), notes, strict=True):
        if n and key not in out:
            out[key] = n
    return out


def _one_test(x: np.ndarray) -> dict:
    n = len(x)
    row = {
        "n_patients": n,
        "n_samples": np.nan,
        "mean_effect": float(np.mean(x)) if n else np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "sd_effect": float(np.std(x, ddof=1)) if n > 1 else np.nan,
        "n_positive": int((x > 0).sum()),
        "n_negative": int((x < 0).sum()),
        "p": np.nan,
        "p_wilcoxon": np.nan,
        "p_sign": np.nan,
        "test": "one-sample t over patients; Wilcoxon signed-rank; sign",
        "samples_left_out": "",
        "note": "",
    }
    if n < 2:
        row["note"] = f"{n} patient(s): no test across patients"
        return row
    half = stats.t.ppf(0.975, n - 1) * np.std(x, ddof=1) / np.sqrt(n)  # 95 % t interval over patients
    row["ci_low"], row["ci_high"] = float(np.mean(x) - half), float(np.mean(x) + half)
    nz = x[x != 0]
    row["p_wilcoxon"] = float(stats.wilcoxon(nz, method="exact").pvalue) if len(nz) else 1.0
    row["p_sign"] = float(stats.binomtest(int((nz > 0).sum()), len(nz), 0.5).pvalue) if len(nz) else 1.0
    notes = []
    if np.ptp(x) == 0:  # zero variance: no t statistic; the sign test still holds
        row["p"] = row["p_sign"]
        notes.append(f"all {n} patients have the same effect ({x[0]:.3g}): no t-test, p is the sign test's")
    else:
        row["p"] = float(stats.ttest_1samp(x, 0.0).pvalue)
    if n < 5:
        notes.append(f"only {n} patients: the smallest possible Wilcoxon p is {2 / 2**n:.3g}")
    row["note"] = "; ".join(notes)
    return row


def _tests(x: np.ndarray, codes: np.ndarray, n_groups: int) -> pd.DataFrame:
    """:func:`_one_test` for every group at once: ``x`` the per-patient effects, ``codes`` their group (0 ..
    ``n_groups`` - 1, each group non-empty). The same tests (t from the mean and SD, the exact Wilcoxon null
    per count of non-zero effects, the two-sided binomial sign test at 0.5 as twice the smaller tail); a test
    checks every column against :func:`_one_test` (relative difference below 1e-9)."""
    order = np.argsort(codes, kind="stable")
    xs, cs = np.asarray(x, dtype=float)[order], np.asarray(codes)[order]
    n = np.bincount(cs, minlength=n_groups)
    mean = np.bincount(cs, weights=xs, minlength=n_groups) / n
    ss = np.bincount(cs, weights=(xs - mean[cs]) ** 2, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.where(n > 1, np.sqrt(ss / (n - 1)), np.nan)
    starts = np.r_[0, np.cumsum(n)[:-1]]
    ptp = np.maximum.reduceat(xs, starts) - np.minimum.reduceat(xs, starts)
    sd[(ptp == 0) & (n > 1)] = 0.0  # equal effects: exactly 0 (the summed mean may differ from them in the last bit)
    pos = np.bincount(cs, weights=xs > 0, minlength=n_groups).astype(int)
    neg = np.bincount(cs, weights=xs < 0, minlength=n_groups).astype(int)
    m = pos + neg  # non-zero effects
    tested = n >= 2
    dof = np.maximum(n - 1, 1)  # degrees of freedom of the one-sample t
    half = stats.t.ppf(0.975, dof) * sd / np.sqrt(n)
    p_sign = np.where(m > 0, np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(pos, m - pos), np.maximum(m, 1), 0.5)), 1.0)
    p_wil = np.ones(n_groups)
    nz = (xs > 0) | (xs < 0)  # the m non-zero effects (NaN counts as neither)
    for size in np.unique(m[tested & (m > 0)]):
        groups = np.flatnonzero(tested & (m == size))
        rows = np.isin(cs, groups) & nz  # sorted by group, ``size`` values each
        p_wil[groups] = stats.wilcoxon(xs[rows].reshape(len(groups), size), axis=1, method="exact").pvalue
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / np.sqrt(n))
    p_t = np.minimum(1.0, 2 * stats.t.sf(np.abs(t), dof))
    flat = ptp == 0
    p = np.where(flat, p_sign, p_t)
    notes = []
    for i in range(n_groups):
        if not tested[i]:
            notes.append(f"{n[i]} patient(s): no test across patients")
            continue
        part = []
        if flat[i]:
            part.append(
                f"all {n[i]} patients have the same effect ({xs[starts[i]]:.3g}): no t-test, p is the sign test's"
            )
        if n[i] < 5:
            part.append(f"only {n[i]} patients: the smallest possible Wilcoxon p is {2 / 2 ** n[i]:.3g}")
        notes.append("; ".join(part))
    nan = np.full(n_groups, np.nan)
    return pd.DataFrame({
        "n_patients": n,
        "n_samples": nan,
        "mean_effect": mean,
        "ci_low": np.where(tested, mean - half, nan),
        "ci_high": np.where(tested, mean + half, nan),
        "sd_effect": sd,
        "n_positive": pos,
        "n_negative": neg,
        "p": np.where(tested, p, nan),
        "p_wilcoxon": np.where(tested, p_wil, nan),
        "p_sign": np.where(tested, p_sign, nan),
        "test": "one-sample t over patients; Wilcoxon signed-rank; sign",
        "samples_left_out": "",
        "note": notes,
    })  # fmt: skip


def across_patients(
    effects: pd.DataFrame,
    *,
    keys: list[str],
    value: str,
    samples: list[str] | None = None,
    reasons: dict | None = None,
    reason_keys: list[str] | None = None,
    fdr_by: list[str] | None = None,
) -> pd.DataFrame:
    """Test per ``keys`` whether the per-patient ``value`` differs from 0 (columns: keys + :data:`TEST_COLUMNS`).

    ``samples``: every sample of the cohort; those that gave no effect for a row are listed in
    ``samples_left_out`` with their reason (``reasons[(sample, *row[reason_keys])]``, else "no value").
    ``fdr``: BH over the rows, within each ``fdr_by`` block (e.g. per definition) when given.
    The tests of all rows run at once (:func:`_tests`).
    """
    reasons = reasons or {}
    reason_keys = reason_keys or []
    grouped = effects.groupby(keys, sort=True, dropna=False, observed=True)
    codes = grouped.ngroup().to_numpy()
    n_groups = grouped.ngroups
    if n_groups == 0:
        out = pd.DataFrame(columns=[*keys, *TEST_COLUMNS])
        out["fdr"] = np.nan
        return out
    first = effects.iloc[np.unique(codes, return_index=True)[1]][keys].reset_index(drop=True)
    out = pd.concat([first, _tests(effects[value].to_numpy(dtype=float), codes, n_groups)], axis=1)
    used: list[set] = [set() for _ in range(n_groups)]
    if "samples" in effects:
        for c, s in zip(codes, effects["samples"].astype(str), strict=True):
            used[c].update(s.split(","))
        out["n_samples"] = [len(u) for u in used]
    elif "n_samples" in effects:
        out["n_samples"] = np.bincount(
            codes, weights=effects["n_samples"].to_numpy(dtype=float), minlength=n_groups
        ).astype(int)
    if samples is not None:
        left_out = []
        for i, kd in enumerate(first[reason_keys].itertuples(index=False, name=None)):
            why = [f"{s} ({reasons.get((s, *kd), 'no value')})" for s in samples if s not in used[i]]
            left_out.append(", ".join(why))
        out["samples_left_out"] = left_out
    out["fdr"] = np.nan
    out = out[[*keys, *TEST_COLUMNS]]
    blocks = out.groupby(fdr_by, dropna=False).groups.values() if fdr_by and len(out) else [out.index]
    for idx in blocks:
        sub = out.loc[idx]
        ok = sub.index[sub["p"].notna().to_numpy()]
        if len(ok):
            out.loc[ok, "fdr"] = false_discovery_control(out.loc[ok, "p"].to_numpy(dtype=float), method="bh")
    return out


def _with_definition(table: pd.DataFrame) -> pd.DataFrame:
    t = table.copy()
    if "definition" not in t:
        t["definition"] = "primary"
    t["definition"] = t["definition"].fillna("").astype(str)
    return t


def neighbour_effects(table: pd.DataFrame, patients: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient neighbour effect per neighbourhood, definition and immune type, and the test over patients.

    The effect is the log2 enrichment of the type around CSC for a CSC definition, and Spearman ``rho`` of
    stemness with the type's neighbour share for ``definition = continuous`` (column ``effect_kind``). Rows
    without a statistic (a blocking note: no malignant, CSC or immune cells) are left out and named in the
    test's ``samples_left_out``; the knn note "transcriptional neighbours" does not block.
    """
    t = _with_definition(table)
    if "group" in t:
        t = t[t["group"].fillna("").astype(str).isin(["CSC", "stemness", ""])]
    cont = t["definition"] == "continuous"
    t["effect"] = np.where(cont, pd.to_numeric(t.get("rho", np.nan), errors="coerce"), t["log2_enrichment"])
    t["effect_kind"] = np.where(cont, "spearman_rho", "log2_enrichment")
    keys = ["neighbourhood", "definition", "effect_kind", "immune_type"]
    reasons = reasons_by_sample(t, ["neighbourhood", "definition"])
    ok = t[usable(t, "effect")]
    eff = per_patient(ok, patients, keys=keys, value="effect")
    test = across_patients(
        eff, keys=keys, value="effect", samples=sorted(set(map(str, table["sample"]))), reasons=reasons,
        reason_keys=["neighbourhood", "definition"], fdr_by=["neighbourhood", "definition"],
    )  # fmt: skip
    return eff, test


def crosstalk_effects(table: pd.DataFrame, patients: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient receiver-aware CSC-vs-non-CSC contrast (``interaction_diff``; ``score_diff`` in old tables)
    per definition, ligand, receptor and receiver, and the test over patients (one hypothesis per row)."""
    t = _with_definition(table)
    value = "interaction_diff" if "interaction_diff" in t else "score_diff"
    keys = ["definition", "ligand", "receptor", "target", "axis"]
    t["axis"] = t["axis"].fillna("").astype(str)
    reasons = reasons_by_sample(t, ["definition"])
    ok = t[usable(t, value)]
    eff = per_patient(ok, patients, keys=keys, value=value)
    test = across_patients(
        eff, keys=keys, value=value, samples=sorted(set(map(str, table["sample"]))), reasons=reasons,
        reason_keys=["definition"], fdr_by=["definition"],
    )  # fmt: skip
    return eff, test


def pseudobulk_effects(
    pseudobulk: pd.DataFrame, patients: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pseudobulk CSC vs non-CSC checkpoint test across patients.

    Counts and library sizes are summed per patient x group (over cells and samples); log2 CPM =
    ``log2(counts / library * 1e6 + 1)``; the per-patient effect is log2 CPM(CSC) - log2 CPM(nonCSC), tested
    over the patients that have both groups with at least ``MIN_GROUP_CELLS`` cells each (paired). Immune groups are summed too and reported as log2 CPM.
    Returns the per-patient effects, the test, and the per-patient x group sums.
    """
    pb = _with_definition(pseudobulk)
    pb["patient"] = pb["sample"].map(patients)
    summed = pb.groupby(["patient", "definition", "gene", "role", "group"], sort=True).agg(
        n_samples=("sample", "nunique"),
        n_cells=("n_cells", "sum"),
        counts=("counts", "sum"),
        library_size=("library_size", "sum"),
    )
    summed = summed.reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        summed["log2_cpm"] = np.log2(summed["counts"] / summed["library_size"] * 1e6 + CPM_PSEUDOCOUNT)
    wide = summed[summed["group"].isin(["CSC", "nonCSC"])].pivot_table(
        index=["patient", "definition", "gene", "role"],
        columns="group",
        values=["log2_cpm", "n_cells"],
        aggfunc="first",
    )
    eff = pd.DataFrame(index=wide.index)
    for g in ("CSC", "nonCSC"):
        eff[f"log2_cpm_{g}"] = wide[("log2_cpm", g)] if ("log2_cpm", g) in wide.columns else np.nan
        eff[f"n_cells_{g}"] = wide[("n_cells", g)] if ("n_cells", g) in wide.columns else np.nan
    eff["log2fc_csc_vs_noncsc"] = eff["log2_cpm_CSC"] - eff["log2_cpm_nonCSC"]
    eff = eff.reset_index()
    paired = eff.dropna(subset=["log2fc_csc_vs_noncsc"])
    few = (paired["n_cells_CSC"] < MIN_GROUP_CELLS) | (paired["n_cells_nonCSC"] < MIN_GROUP_CELLS)
    small = {(p, d) for p, d in zip(paired.loc[few, "patient"], paired.loc[few, "definition"], strict=True)}
    paired = paired[~few]
    have = {
        (p, d)
        for p, d, n in zip(summed["patient"], summed["definition"], summed["group"], strict=True)
        if n in ("CSC", "nonCSC")
    }
    reasons = {}
    for s_, p_ in patients.items():
        for d in set(summed["definition"]):
            groups = set(summed.loc[(summed["patient"] == p_) & (summed["definition"] == d), "group"])
            if not {"CSC", "nonCSC"} <= groups and (p_, d) in have | {(p_, d)}:
                reasons[(s_, d)] = "no CSC" if "CSC" not in groups else "no non-CSC malignant cells"
            elif (p_, d) in small:
                reasons[(s_, d)] = f"fewer than {MIN_GROUP_CELLS} CSC or non-CSC cells"
    paired = paired.assign(
        samples=[",".join(sorted(s for s, q in patients.items() if q == p)) for p in paired["patient"]]
    )
    test = across_patients(
        paired, keys=["definition", "gene", "role"], value="log2fc_csc_vs_noncsc",
        samples=sorted(set(map(str, pseudobulk["sample"]))), reasons=reasons, reason_keys=["definition"],
        fdr_by=["definition"],
    )  # fmt: skip
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


BURDEN_COLUMNS = [
    "burden",
    "definition",
    "immune_type",
    "n_patients",
    "n_samples",
    "rho",
    "p",
    "fdr",
    "test",
    "samples_left_out",
    "note",
]


def csc_burden_per_sample(cells: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per sample: malignant cells, CSC fraction per definition, mean stemness, and each immune type's share.

    ``cells``: the cohort cells table (``sample``, ``cell_type``, ``compartment``, ``malignant``, ``stemness``,
    ``csc`` and one ``csc_<name>`` column per CSC definition). Definitions: the ``csc_<name>`` columns (not
    ``csc_fdr``), else ``primary`` from ``csc``. Immune share: the type's cells over all the sample's cells.
    Returns the wide per-sample table and the burden column names.
    """
    c = cells.copy()
    mal = (
        c["malignant"].astype(str).str.lower().isin(["true", "1"])
        if "malignant" in c
        else c["compartment"] == "malignant"
    )
    c["_mal"] = mal.to_numpy()
    flags = {"true", "false", "1", "0", "1.0", "0.0"}
    defs = [
        k
        for k in c.columns
        if k.startswith("csc_") and k != "csc_fdr" and set(c[k].dropna().astype(str).str.lower()) <= flags
    ]
    if not defs:
        c["csc_primary"] = c["csc"]
        defs = ["csc_primary"]
    for d in defs:
        c[d] = c[d].astype(str).str.lower().isin(["true", "1"]) & c["_mal"]
    imm = c["compartment"].astype(str) == "immune"
    types = sorted(set(c.loc[imm & ~c["_mal"], "cell_type"].astype(str)))
    rows = []
    for s, g in c.groupby("sample", sort=False):
        m = g["_mal"].to_numpy()
        row = {"sample": s, "n_cells": len(g), "n_malignant": int(m.sum())}
        for d in defs:
            row[f"csc_fraction:{d[4:]}"] = float(g.loc[m, d].mean()) if m.any() else np.nan
        row["mean_stemness"] = (
            float(pd.to_numeric(g.loc[m, "stemness"], errors="coerce").mean())
            if m.any() and "stemness" in g
            else np.nan
        )
        gi = (g["compartment"].astype(str) == "immune") & ~g["_mal"]
        for t in types:
            row[f"share:{t}"] = float((gi & (g["cell_type"].astype(str) == t)).sum() / len(g))
        rows.append(row)
    burdens = [f"csc_fraction:{d[4:]}" for d in defs] + ["mean_stemness"]
    return pd.DataFrame(rows), burdens


def csc_burden_immune(cells: pd.DataFrame, patients: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Across patients: Spearman rho of CSC burden with each immune type's share (dissociated-data niche answer).

    Per-sample burden and shares (:func:`csc_burden_per_sample`) are averaged over the samples of a patient;
    the patients are the replicates (Spearman over patients, p from :func:`scipy.stats.spearmanr`; fewer than
    4 patients with both values: no test, a note). ``fdr``: BH over the immune types of one burden. A sample
    without malignant cells has no burden and is named in ``samples_left_out``.
    Returns the per-patient table and the test table (:data:`BURDEN_COLUMNS`).
    """
    wide, burdens = csc_burden_per_sample(cells)
    if wide.empty:
        return wide, pd.DataFrame(columns=BURDEN_COLUMNS)
    wide["patient"] = wide["sample"].map(lambda s: patients.get(str(s), str(s)))
    value_cols = [k for k in wide.columns if k.startswith(("csc_fraction:", "mean_stemness", "share:"))]
    per = wide.groupby("patient", sort=True).agg(
        n_samples=("sample", "nunique"),
        samples=("sample", lambda x: ",".join(sorted(map(str, x)))),
        n_malignant=("n_malignant", "sum"),
        **{k: (k, "mean") for k in value_cols},
    )
    per = per.reset_index()
    types = [k[len("share:") :] for k in value_cols if k.startswith("share:")]
    rows = []
    for b in burdens:
        left = wide.loc[~np.isfinite(wide[b].to_numpy(dtype=float)), "sample"].astype(str)
        why = ", ".join(f"{s} (no malignant cells)" for s in left)
        block = []
        for t in types:
            x, y = per[b].to_numpy(dtype=float), per[f"share:{t}"].to_numpy(dtype=float)
            ok = np.isfinite(x) & np.isfinite(y)
            n = int(ok.sum())
            row = {
                "burden": "mean_stemness" if b == "mean_stemness" else "csc_fraction",
                "definition": "continuous" if b == "mean_stemness" else b.split(":", 1)[1],
                "immune_type": t,
                "n_patients": n,
                "n_samples": int(per.loc[ok, "n_samples"].sum()),
                "rho": np.nan,
                "p": np.nan,
                "test": "Spearman over patients (per-patient means of per-sample values)",
                "samples_left_out": why,
                "note": "",
            }
            if b == "mean_stemness" and n and np.nanmax(np.abs(x[ok])) < 1e-6:
                row["note"] = (
                    "stemness is standardised within each sample (mean 0 over its malignant cells): "
                    "its mean cannot compare samples; no test"
                )
            elif n < 4:
                row["note"] = f"{n} patient(s) with a burden: no test across patients (needs 4)"
            elif np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
                row["note"] = "burden or share constant across patients"
            else:
                res = stats.spearmanr(x[ok], y[ok])
                row["rho"], row["p"] = float(res.statistic), float(res.pvalue)
            block.append(row)
        df = pd.DataFrame(block, columns=[c for c in BURDEN_COLUMNS if c != "fdr"])
        df["fdr"] = np.nan
        okp = df["p"].notna().to_numpy()
        if okp.any():
            df.loc[okp, "fdr"] = false_discovery_control(df.loc[okp, "p"].to_numpy(dtype=float), method="bh")
        rows.append(df[BURDEN_COLUMNS])
    test = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=BURDEN_COLUMNS)
    return per, test
