"""Thin adapter: LIANA crosstalk CSC/nonCSC -> immune and the CSC-minus-nonCSC difference (cscniche.stages.crosstalk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input[0])
    table, difference = stages.crosstalk(
        adata, sample=snakemake.wildcards.sample, seed=snakemake.params.seed, **snakemake.params.crosstalk
    )
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    difference.to_csv(snakemake.output.difference, sep="\t", index=False)
