"""Thin adapter: malignant cells by inferred copy number (cscniche.stemness.cnv)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stemness
from cscniche._smk import section, step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    cnv = section(snakemake, "cnv")
    table = stemness.cnv(adata, sample=snakemake.wildcards.sample, cnv=cnv, seed=snakemake.params.seed)
    table.to_csv(snakemake.output.table, sep="\t", index=False)
    adata.write_h5ad(snakemake.output.h5ad)
