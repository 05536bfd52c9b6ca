"""Thin adapter: QC-filter the raw counts, streamed (cscniche.preprocess.qc_file)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import preprocess
from cscniche._smk import section, step

with step(snakemake):
    qc = section(snakemake, "qc")
    table = preprocess.qc_file(
        snakemake.input[0],
        snakemake.output.h5ad,
        sample=snakemake.wildcards.sample,
        qc=qc,
        cell_type_key=snakemake.params.cell_type_key or None,
        seed=snakemake.params.seed,
        workers=snakemake.threads,
    )
    table.to_csv(snakemake.output.table, sep="\t", index=False)
