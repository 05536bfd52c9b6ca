"""Small helpers shared by the modules that write the per-sample result tables."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd


def note_row(columns: list[str], note: str, *, blank: Iterable[str] = (), **values) -> pd.DataFrame:
    """A one-row table that says why a sample has no results (e.g. ``note='no immune cells'``).

    Every column is NaN except ``note``, the ``blank`` (text) columns, which are ``''``, and the ``values``
    given (``sample=...``, ``neighbourhood=...``). Names in ``blank`` that are not columns are ignored.
    """
    row = dict.fromkeys(columns, np.nan)
    row.update(dict.fromkeys(blank, ""))
    row.update(values, note=note)
    return pd.DataFrame([row], columns=columns)


#: gzip settings that make ``.tsv.gz`` outputs byte-identical across runs (no timestamp in the header)
GZIP = {"method": "gzip", "mtime": 0}


def open_maybe_gzip(path: str | Path, mode: str = "rt"):
    """Open ``path`` for reading, through gzip when its name ends in ``.gz`` (``mode`` ``"rt"`` or ``"rb"``)."""
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)
