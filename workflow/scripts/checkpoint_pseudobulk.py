"""Thin adapter: checkpoint counts summed per group, for the pseudobulk test (cscniche.stages.checkpoint_pseudobulk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    table = stages.checkpoint_pseudobulk(adata, sample=snakemake.wildcards.sample, genes=snakemake.input.genes)
    table.to_csv(snakemake.output[0], sep="\t", index=False)
