"""Thin adapter: cell types and compartments (cscniche.preprocess.annotate)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import preprocess
from cscniche._smk import step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    preprocess.annotate(
        adata,
        cell_type_key=snakemake.params.cell_type_key or None,
        markers=snakemake.input.markers,
        compartments=snakemake.input.compartments,
    )
    adata.write_h5ad(snakemake.output[0])
