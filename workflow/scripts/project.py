"""Thin adapter: every QC-passed cell scored with the analysed sketch's fits (cscniche.stemness.project)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stemness
from cscniche._smk import section, step
from cscniche._tables import GZIP

with step(snakemake):
    table = stemness.project(
        snakemake.input.qc,
        ad.read_h5ad(snakemake.input.sketch),
        sample=snakemake.wildcards.sample,
        scoring=section(snakemake, "scoring"),
        csc=section(snakemake, "csc"),
        embedding=section(snakemake, "embedding"),
        qc=section(snakemake, "qc"),
        seed=snakemake.params.seed,
    )
    table.to_csv(snakemake.output[0], sep="\t", index=False, compression=GZIP)
