"""Thin adapter: malignant cells by inferred copy number (cscniche.stages.cnv)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    table = stages.cnv(adata, sample=snakemake.wildcards.sample, seed=snakemake.params.seed, **snakemake.params.cnv)
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    adata.write_h5ad(snakemake.output.h5ad)
