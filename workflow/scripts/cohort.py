"""Thin adapter: concatenate each per-sample table over the samples (cscniche.cohort.concat_tables), one job."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import cohort
from cscniche._smk import step
from cscniche._tables import GZIP

with step(snakemake):
    for name, out in snakemake.output.items():
        table = cohort.concat_tables(list(snakemake.input[name]))
        table.to_csv(out, sep="\t", index=False, compression=GZIP if out.endswith(".gz") else None)
