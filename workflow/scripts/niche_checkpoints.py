"""Thin adapter: checkpoints of immune cells in CSC neighbourhoods vs elsewhere (cscniche.stages.niche_checkpoints)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    table = stages.niche_checkpoints(
        adata,
        sample=snakemake.wildcards.sample,
        genes=snakemake.input.genes,
        min_cells=snakemake.params.min_cells,
        spatial_x=snakemake.params.spatial_x,
        spatial_y=snakemake.params.spatial_y,
        **snakemake.params.neighbours,
    )
    table.to_csv(snakemake.output[0], sep="\t", index=False)
