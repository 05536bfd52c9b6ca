"""Thin adapter: every QC-passed cell scored with the analysed sketch's fits (cscniche.stages.project)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    table = stages.project(
        snakemake.input.qc,
        ad.read_h5ad(snakemake.input.sketch),
        sample=snakemake.wildcards.sample,
        n_neighbors=snakemake.params.n_neighbors,
        target_sum=snakemake.params.target_sum,
        seed=snakemake.params.seed,
        **snakemake.params.scoring,
        **snakemake.params.csc,
    )
    table.to_csv(snakemake.output[0], sep="\t", index=False, compression=stages.GZIP)
