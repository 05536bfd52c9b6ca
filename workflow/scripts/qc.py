"""Thin adapter: QC filter and normalise (cscniche.stages.qc)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adata, table = stages.qc(ad.read_h5ad(snakemake.input[0]), sample=snakemake.wildcards.sample, **snakemake.params.qc)
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    adata.write_h5ad(snakemake.output.h5ad)
