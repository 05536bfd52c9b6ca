"""Thin adapter: the per-sample report figures (cscniche.pl.sample_figures), as PNG (and PDF with figures.sample_pdf)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled
os.environ["MPLBACKEND"] = "Agg"  # no display: draw to files only

import anndata as ad
import pandas as pd

from cscniche import pl
from cscniche._smk import step

with step(snakemake):
    figures = pl.sample_figures(
        ad.read_h5ad(snakemake.input.h5ad),
        neighbours=pd.read_csv(snakemake.input.neighbours, sep="\t"),
        checkpoints=pd.read_csv(snakemake.input.checkpoints, sep="\t"),
        crosstalk_table=pd.read_csv(snakemake.input.crosstalk, sep="\t"),
        sample=snakemake.wildcards.sample,
    )
    outputs = dict(snakemake.output.items())
    for name, fig in figures.items():
        formats = ("png", "pdf") if f"{name}_pdf" in outputs else ("png",)
        pl.save(fig, Path(outputs[name]).with_suffix(""), formats=formats)
