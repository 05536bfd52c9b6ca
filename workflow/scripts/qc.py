"""Thin adapter: QC-filter the raw counts, streamed (cscniche.stages.qc_file)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    table = stages.qc_file(
        snakemake.input[0], snakemake.output.h5ad, sample=snakemake.wildcards.sample, **snakemake.params.qc
    )
    table.to_csv(snakemake.output.table, sep="\t", index=False)
