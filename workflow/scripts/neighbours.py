"""Thin adapter: immune-neighbour enrichment around CSC vs non-CSC cells (cscniche.stages.neighbours)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input[0])
    table = stages.neighbours(
        adata,
        sample=snakemake.wildcards.sample,
        seed=snakemake.params.seed,
        spatial_x=snakemake.params.spatial_x,
        spatial_y=snakemake.params.spatial_y,
        **snakemake.params.neighbours,
    )
    table.to_csv(snakemake.output[0], sep="\t", index=False)
