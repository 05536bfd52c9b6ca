"""Thin adapter: normalise, embedding, kNN graph and clusters (cscniche.preprocess.embed_sample)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import preprocess
from cscniche._smk import section, step

with step(snakemake):
    adata = preprocess.embed_sample(
        snakemake.input[0],
        sample=snakemake.wildcards.sample,
        embedding=section(snakemake, "embedding"),
        qc=section(snakemake, "qc"),
        scale=section(snakemake, "scale"),
        seed=snakemake.params.seed,
    )
    adata.write_h5ad(snakemake.output[0])
