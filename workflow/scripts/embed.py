"""Thin adapter: normalise, embedding, kNN graph, clusters, cell types and compartments
(cscniche.preprocess.embed_sample with the annotation section)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import preprocess
from cscniche._smk import section, step

with step(snakemake):
    adata = preprocess.embed_sample(
        snakemake.input.h5ad,
        sample=snakemake.wildcards.sample,
        embedding=section(snakemake, "embedding"),
        qc=section(snakemake, "qc"),
        scale=section(snakemake, "scale"),
        seed=snakemake.params.seed,
        annotation=section(
            snakemake, "annotation", markers=snakemake.input.markers, compartments=snakemake.input.compartments
        ),
        cell_type_key=snakemake.params.cell_type_key or None,
    )
    adata.write_h5ad(snakemake.output[0])
