"""What a run found, per sample: cells kept, malignant cells, CSCs (per definition), warnings that change the reading.

Read from the per-sample tables of ``results/<sample>/`` (whatever of them exists, so a failed run is summarised as
far as it got): ``qc.tsv`` (cells in and kept, doublets, QC notes), ``stemness_summary.tsv`` (malignant cells, CSC;
one ``n_csc_<definition>`` column per CSC definition when the run has several) and ``signature_coverage.tsv``
(signature genes missing from the data). :func:`run_summary` builds the table written to ``results/summary.tsv``;
:func:`format_summary` the text printed at the end of a run (Snakefile ``onsuccess``/``onerror``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

#: a signature with less than this share of its genes in the data is a warning in the summary
MIN_COVERAGE = 0.8
#: columns of results/summary.tsv, before the per-definition CSC counts, warnings and the sheet's meta_ columns
COLUMNS = ["sample", "status", "n_cells_in", "n_cells_kept", "doublets", "n_malignant", "n_csc", "csc_fraction"]
_PER_DEFINITION = re.compile(r"^n_csc_(.+)$")
#: QC notes that do not change how the tables read (kept in qc.tsv and the log, left out of the summary)
QUIET = ("Scrublet called no doublet", "doublet detection skipped: spatial sample")


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, sep="\t") if path.is_file() else None
    except Exception:  # noqa: BLE001 - a half-written table is reported as missing, never a crash at the end
        return None


def _int(value) -> int | None:
    try:
        return None if pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None


def sample_summary(sample: str, results: str | Path = "results") -> dict:
    """One sample's row of the summary (see the module docstring); absent tables leave their fields empty."""
    d = Path(results) / sample
    row: dict = {c: None for c in COLUMNS} | {"sample": sample}
    warnings: list[str] = []
    qc = _read(d / "qc.tsv")
    if qc is not None and len(qc):
        top = qc[qc["cell_type"].astype(str) == "all"].iloc[0] if "cell_type" in qc else qc.iloc[0]
        row["n_cells_in"] = _int(top.get("n_cells_in"))
        row["n_cells_kept"] = _int(top.get("n_cells_out"))
        row["doublets"] = _int(top.get("doublets"))
        if "note" in qc:
            for note in qc["note"].dropna().astype(str):
                warnings += [n.strip() for n in note.split(";") if n.strip() and not n.strip().startswith(QUIET)]
    summary = _read(d / "stemness_summary.tsv")
    definitions: dict[str, int | None] = {}
    if summary is not None and len(summary):
        s = summary.iloc[0]
        row["n_malignant"] = _int(s.get("n_malignant"))
        row["n_csc"] = _int(s.get("n_csc"))
        frac = s.get("csc_fraction")
        row["csc_fraction"] = round(float(frac), 4) if frac is not None and pd.notna(frac) else None
        if "csc_rule" in s and pd.notna(s["csc_rule"]):
            row["csc_rule"] = str(s["csc_rule"])
        for col in summary.columns:
            m = _PER_DEFINITION.match(str(col))
            if m:
                definitions[m.group(1)] = _int(s[col])
        for col in ("candidate_warning", "cnv_warning"):  # how the malignant cells were found, when it matters
            if col in s and pd.notna(s[col]) and str(s[col]).strip():
                warnings.append(str(s[col]).strip())
        if row["n_malignant"] == 0:
            warnings.append("no malignant cell: no CSC can be called, the niche tables are empty")
        elif row["n_csc"] == 0:
            rule = f" (rule: {row['csc_rule']})" if row.get("csc_rule") else ""
            warnings.append(f"0 CSC{rule}: the CSC-vs-non-CSC tables have no CSC group")
        for name, n in definitions.items():
            if n == 0 and row["n_malignant"]:
                warnings.append(f"0 CSC by the definition '{name}'")
    for name, n in definitions.items():
        row[f"n_csc_{name}"] = n
    coverage = _read(d / "signature_coverage.tsv")
    if coverage is not None and {"signature", "fraction_present"} <= set(coverage.columns):
        low = coverage[coverage["fraction_present"] < MIN_COVERAGE]
        for r in low.itertuples():
            have = f"{r.n_present}/{r.n_genes}" if hasattr(r, "n_present") else f"{100 * r.fraction_present:.0f}%"
            warnings.append(f"signature {r.signature}: only {have} genes in the data")
    done = (d / "scored.h5ad").is_file() and summary is not None
    row["status"] = "done" if done else ("QC done" if qc is not None else "not run")
    row["warnings"] = "; ".join(dict.fromkeys(warnings))
    return row


def run_summary(samples, results: str | Path = "results") -> pd.DataFrame:
    """The summary table: one row per sample of the sheet (a DataFrame with ``sample``, or a list of IDs).

    Columns: :data:`COLUMNS`, ``csc_rule``, ``n_csc_<definition>`` (when the run has several definitions),
    ``warnings`` (semicolon-separated) and the sheet's own ``meta_`` columns, carried along.
    """
    if isinstance(samples, pd.DataFrame):
        ids = samples["sample"].astype(str).tolist()
        meta = samples[[c for c in samples.columns if str(c).startswith("meta_")]].copy()
        meta.index = ids
    else:
        ids, meta = [str(s) for s in samples], pd.DataFrame(index=[str(s) for s in samples])
    table = pd.DataFrame([sample_summary(s, results) for s in ids])
    lead = [c for c in [*COLUMNS, "csc_rule"] if c in table]
    per_def = sorted(c for c in table.columns if _PER_DEFINITION.match(c))
    table = table[lead + per_def + ["warnings"]]
    for c in table.columns:
        if c.startswith("n_") or c == "doublets":
            table[c] = pd.array(table[c], dtype="Int64")
    for c in meta.columns:
        table[c] = meta[c].reindex(ids).to_numpy()
    return table


def _n(v) -> str:
    return "-" if v is None or pd.isna(v) else f"{int(v):,}"


def format_summary(table: pd.DataFrame, *, results: str = "results", report: str | None = None, ok: bool = True) -> str:
    """The end-of-run text: a line per sample with its counts and warnings, then where the tables and report are."""
    lines = ["", "=" * 78, f"cscniche: {'run complete' if ok else 'run stopped with an error'}: what it found", ""]
    for r in table.to_dict("records"):
        per_def = {k[len("n_csc_") :]: v for k, v in r.items() if _PER_DEFINITION.match(str(k)) and pd.notna(v)}
        frac = r.get("csc_fraction")
        csc = f"{_n(r.get('n_csc'))} CSC"
        if frac is not None and pd.notna(frac):
            csc += f" ({100 * frac:.1f}% of malignant)"
        if per_def:
            csc += "; by definition: " + ", ".join(f"{k} {_n(v)}" for k, v in per_def.items())
        lines.append(
            f"  {r['sample']}: {_n(r.get('n_cells_kept'))} of {_n(r.get('n_cells_in'))} cells kept by QC "
            f"({_n(r.get('doublets'))} doublets), {_n(r.get('n_malignant'))} malignant, {csc}"
            + ("" if r.get("status") == "done" else f"  [{r.get('status')}]")
        )
        for w in str(r.get("warnings") or "").split("; "):
            if w:
                lines.append(f"    WARNING: {w}")
    lines.append("")
    lines.append(f"  Tables: {results}/<sample>/ and {results}/cohort/; this summary: {results}/summary.tsv")
    if report:
        lines.append(f"  Report: {report}")
    lines.append("=" * 78)
    return "\n".join(lines)
