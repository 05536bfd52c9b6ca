"""Thin adapter: load one sample's raw counts to an .h5ad, streamed when it is one (cscniche.load.write_sample)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import load
from cscniche._smk import step

with step(snakemake):
    load.write_sample(
        snakemake.input[0],
        snakemake.output[0],
        sample=snakemake.wildcards.sample,
        fmt=snakemake.params.fmt or None,
        cell_type_key=snakemake.params.cell_type_key or None,
        spatial_key=snakemake.params.spatial_key or None,
        obs_table=snakemake.params.obs_table or None,
        obs_index=snakemake.params.obs_index or None,
        subset=snakemake.params.subset or None,
        member=snakemake.params.member or None,
        gene_map=snakemake.params.gene_map or None,
        known_genes=set(snakemake.params.known_genes),
    )
