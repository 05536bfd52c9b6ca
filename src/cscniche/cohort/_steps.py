"""The cohort steps (rules ``cohort``, ``cohort_statistics``): per-sample tables in, cohort tables out."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

from .._tables import open_maybe_gzip


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
    from . import _statistics  # scipy.stats: not needed by the table concatenation of rule cohort_tables

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
    from . import _statistics

    patients = _statistics.patient_of(
        pd.DataFrame({"sample": list(samples), "patient": [samples[s] or "" for s in samples]})
    )
    return _statistics.csc_burden_immune(pd.read_csv(cells, sep="\t", low_memory=False), patients)


def concat_tables(paths: list[str | Path], *, sep: str = "\t") -> pd.DataFrame:
    """Concatenate per-sample tables (same columns) in the order given."""
    frames = [pd.read_csv(p, sep=sep) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _header(path: Path) -> bytes:
    with open_maybe_gzip(path, "rb") as fh:
        return fh.readline()


def write_cohort_table(paths: list[str | Path], out: str | Path, *, sep: str = "\t") -> None:
    """Concatenate per-sample tables (in the order given) into ``out``, gzip-compressed when it ends in ``.gz``.

    When every table has the same header line, the rows are copied as text: no parse and no re-formatting, so
    each sample's values reach the cohort table byte for byte (pandas turned an integer column into floats when
    another sample had a missing value there), and 40 samples take seconds instead of a minute. Otherwise the
    tables are joined by column name (:func:`concat_tables`). The gzip stream is deterministic (no name, mtime 0).
    """
    paths, out = [Path(p) for p in paths], Path(out)
    heads = [_header(p) for p in paths]
    if not paths or not heads[0].strip() or any(h != heads[0] for h in heads):
        table = concat_tables(paths, sep=sep)
        table.to_csv(
            out, sep=sep, index=False, compression={"method": "gzip", "mtime": 0} if out.suffix == ".gz" else None
        )
        return
    with open(out, "wb") as raw:
        dst = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) if out.suffix == ".gz" else raw
        )
        dst.write(heads[0] if heads[0].endswith(b"\n") else heads[0] + b"\n")
        for path in paths:
            with open_maybe_gzip(path, "rb") as src:
                src.readline()
                last = b"\n"
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    last = chunk[-1:]
                if last != b"\n":
                    dst.write(b"\n")
        if dst is not raw:
            dst.close()
