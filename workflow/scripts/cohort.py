"""Thin adapter: concatenate each per-sample table over the samples (cscniche.cohort.write_cohort_table), one job."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import cohort
from cscniche._smk import step

with step(snakemake):
    for name, out in snakemake.output.items():
        cohort.write_cohort_table(list(snakemake.input[name]), out)
