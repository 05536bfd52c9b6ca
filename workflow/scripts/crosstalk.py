"""Thin adapter: LIANA crosstalk CSC/nonCSC -> immune and the CSC-minus-nonCSC difference (cscniche.niche.crosstalk)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import niche
from cscniche._smk import section, step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input[0])
    table, difference = niche.crosstalk(
        adata, sample=snakemake.wildcards.sample, crosstalk=section(snakemake, "crosstalk"), seed=snakemake.params.seed
    )
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    difference.to_csv(snakemake.output.difference, sep="\t", index=False)
