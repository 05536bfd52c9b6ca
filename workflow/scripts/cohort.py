"""Thin adapter: concatenate per-sample tables (cscniche.stages.concat_tables)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    out = snakemake.output[0]
    table = stages.concat_tables(list(snakemake.input))
    table.to_csv(out, sep="\t", index=False, compression=stages.GZIP if out.endswith(".gz") else None)
