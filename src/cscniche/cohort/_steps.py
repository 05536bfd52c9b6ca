"""The cohort steps (rules ``cohort``, ``cohort_statistics``): per-sample tables in, cohort tables out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import _statistics


def cohort_statistics(
    *,
    neighbours: str | Path,
    pseudobulk: str | Path,
    crosstalk: str | Path,
    samples: dict[str, str],
) -> dict[str, pd.DataFrame]:
    """Tests across patients from the cohort tables; ``samples`` maps sample -> patient ('' = own patient).

    Returns
    -------
    The cohort tables by name (see :func:`cscniche.cohort._statistics.cohort_statistics`).
    """
    sheet = pd.DataFrame({"sample": list(samples), "patient": [samples[s] or "" for s in samples]})
    return _statistics.cohort_statistics(
        neighbours=pd.read_csv(neighbours, sep="\t", keep_default_na=False, na_values=[""]),
        pseudobulk=pd.read_csv(pseudobulk, sep="\t"),
        crosstalk=pd.read_csv(crosstalk, sep="\t", keep_default_na=False, na_values=[""]),
        samples=sheet,
    )


def csc_burden_immune(*, cells: str | Path, samples: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CSC burden vs immune composition over patients (see :func:`cscniche.cohort._statistics.csc_burden_immune`).

    ``cells``: the cohort cells table (``results/cohort/cells.tsv.gz``); ``samples`` maps sample -> patient.

    Returns
    -------
    ``(per_patient, test)``.
    """
    patients = _statistics.patient_of(
        pd.DataFrame({"sample": list(samples), "patient": [samples[s] or "" for s in samples]})
    )
    return _statistics.csc_burden_immune(pd.read_csv(cells, sep="\t", low_memory=False), patients)


def concat_tables(paths: list[str | Path], *, sep: str = "\t") -> pd.DataFrame:
    """Concatenate per-sample tables (same columns) in the order given."""
    frames = [pd.read_csv(p, sep=sep) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
