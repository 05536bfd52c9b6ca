"""Thin adapter: the cohort report figures (cscniche.pl.cohort_figures), each as PNG and PDF."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled
os.environ["MPLBACKEND"] = "Agg"  # no display: draw to files only

import pandas as pd

from cscniche import pl
from cscniche._smk import step

CELL_COLUMNS = ["sample", "cell_type", "compartment", "malignant", "csc"]
PATIENT_TABLES = [f"{what}_{kind}" for what in ("neighbours", "checkpoints", "crosstalk", "burden")
                  for kind in ("patients", "test")]  # fmt: skip

with step(snakemake):
    figures = pl.cohort_figures(
        pd.read_csv(snakemake.input.cells, sep="\t", usecols=lambda c: c in CELL_COLUMNS),
        neighbours=pd.read_csv(snakemake.input.neighbours, sep="\t"),
        checkpoints=pd.read_csv(snakemake.input.checkpoints, sep="\t"),
        patient_tables={name: pd.read_csv(snakemake.input[name], sep="\t") for name in PATIENT_TABLES},
    )
    for name, fig in figures.items():
        pl.save(fig, Path(snakemake.output[name]).with_suffix(""))
