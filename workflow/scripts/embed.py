"""Thin adapter: embedding, kNN graph and clusters (cscniche.stages.embed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input[0])
    stages.embed(adata, seed=snakemake.params.seed, **snakemake.params.embedding)
    adata.write_h5ad(snakemake.output[0])
