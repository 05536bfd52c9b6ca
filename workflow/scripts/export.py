"""Thin adapter: the per-cell table and the final AnnData with every table in uns (cscniche.niche.export)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import niche
from cscniche._smk import step
from cscniche._tables import GZIP

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    cells = niche.export(adata, neighbours=snakemake.input.neighbours, checkpoints=snakemake.input.checkpoints)
    cells.to_csv(snakemake.output.cells, sep="\t", index=False, compression=GZIP)
    adata.write_h5ad(snakemake.output.h5ad, compression="gzip")
