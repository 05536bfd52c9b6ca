"""Thin adapter: the checkpoint-axis crosstalk figure (cscniche.pl.crosstalk), as PNG and PDF."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled
os.environ["MPLBACKEND"] = "Agg"  # no display: draw to files only

import pandas as pd

from cscniche import pl
from cscniche._smk import step

with step(snakemake):
    fig = pl.crosstalk(pd.read_csv(snakemake.input[0], sep="\t"), sample=snakemake.wildcards.sample)
    pl.save(fig, Path(snakemake.output.png).with_suffix(""))
