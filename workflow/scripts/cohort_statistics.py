"""Thin adapter: statistics across patients from the cohort tables (cscniche.cohort.cohort_statistics)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import cohort
from cscniche._smk import step

with step(snakemake):
    tables = cohort.cohort_statistics(
        neighbours=snakemake.input.neighbours,
        pseudobulk=snakemake.input.pseudobulk,
        crosstalk=snakemake.input.crosstalk,
        samples=snakemake.params.samples,
    )
    for name, path in snakemake.output.items():
        tables[name].to_csv(path, sep="\t", index=False)
