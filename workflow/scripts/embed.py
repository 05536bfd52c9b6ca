"""Thin adapter: normalise, embedding, kNN graph and clusters (cscniche.stages.embed_sample)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adata = stages.embed_sample(
        snakemake.input[0],
        sample=snakemake.wildcards.sample,
        target_sum=snakemake.params.target_sum,
        max_cells=snakemake.params.max_cells,
        seed=snakemake.params.seed,
        **snakemake.params.embedding,
    )
    adata.write_h5ad(snakemake.output[0])
