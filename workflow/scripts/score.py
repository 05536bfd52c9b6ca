"""Thin adapter: signature scores, potency, stemness index, marker phenotypes and CSC definitions (cscniche.stemness.score)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stemness
from cscniche._smk import section, step

with step(snakemake):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    coverage = stemness.score(
        adata,
        sample=snakemake.wildcards.sample,
        scoring=section(snakemake, "scoring", gene_sets=list(snakemake.input.gene_sets)),
        csc=section(snakemake, "csc"),
        seed=snakemake.params.seed,
        tumour_type=snakemake.params.tumour_type or None,
    )
    coverage.to_csv(snakemake.output.coverage, sep="\t", index=False)
    info = adata.uns["cscniche"]
    info["stemness_summary"].to_csv(snakemake.output.summary, sep="\t", index=False)
    info["pseudobulk_scores"].to_csv(snakemake.output.pseudobulk, sep="\t", index=False)
    adata.write_h5ad(snakemake.output.h5ad)
