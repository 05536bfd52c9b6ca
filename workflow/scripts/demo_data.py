"""Thin adapter: generate the demo dataset (cscniche.demo.make_demo)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import demo, scoring
from cscniche._smk import step

with step(snakemake):
    sets = {}
    for path in snakemake.params.gene_sets:
        sets.update(scoring.read_gmt(path))
    adata = demo.make_demo(seed=snakemake.params.seed, n_background=snakemake.params.n_background, gene_sets=sets)
    adata.write_h5ad(snakemake.output[0])
