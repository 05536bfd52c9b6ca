"""Thin adapter: CSC burden vs immune composition across patients (cscniche.cohort.csc_burden_immune)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import cohort
from cscniche._smk import step

with step(snakemake):
    per_patient, test = cohort.csc_burden_immune(cells=snakemake.input.cells, samples=snakemake.params.samples)
    test.to_csv(snakemake.output.test, sep="\t", index=False)
    per_patient.to_csv(snakemake.output.patients, sep="\t", index=False)
