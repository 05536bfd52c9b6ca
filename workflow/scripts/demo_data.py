"""Thin adapter: generate the demo dataset (cscniche.demo.make_demo)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import demo
from cscniche._smk import step

with step(snakemake):
    adata = demo.make_demo(
        seed=snakemake.params.seed, n_background=snakemake.params.n_background, gene_sets=snakemake.params.gene_sets
    )
    adata.write_h5ad(snakemake.output[0])
