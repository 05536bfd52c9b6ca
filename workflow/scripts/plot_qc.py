"""Thin adapter: the QC report figures (cscniche.pl.qc_figures), each as PNG and PDF."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled
os.environ["MPLBACKEND"] = "Agg"  # no display: draw to files only

import pandas as pd

from cscniche import pl
from cscniche._smk import step

QC_COLUMNS = ["sample", "n_genes", "total_counts", "pct_counts_mt"]

with step(snakemake):
    figures = pl.qc_figures(
        pd.read_csv(snakemake.input.qc, sep="\t"),
        cells=pd.read_csv(snakemake.input.cells, sep="\t", usecols=lambda c: c in QC_COLUMNS),
        coverage=pd.read_csv(snakemake.input.coverage, sep="\t"),
    )
    for name, fig in figures.items():
        pl.save(fig, Path(snakemake.output[name]).with_suffix(""))
