"""Thin adapter: results/summary.tsv, what the run found per sample (cscniche.summary.run_summary)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

import pandas as pd

from cscniche import summary
from cscniche._smk import step

with step(snakemake):
    results = Path(snakemake.output[0]).parent
    table = summary.run_summary(pd.DataFrame(snakemake.params.samples), results)
    table.to_csv(snakemake.output[0], sep="\t", index=False)
