"""Thin adapter: kNN neighbour enrichment of one patient's samples on a shared, corrected embedding (cscniche.stages.patient_neighbours)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import stages
from cscniche._smk import step

with step(snakemake):
    adatas = [ad.read_h5ad(p) for p in snakemake.input]
    emb = snakemake.params.embedding
    table = stages.patient_neighbours(
        adatas,
        patient=snakemake.wildcards.patient,
        n_permutations=snakemake.params.neighbours["n_permutations"],
        n_top_genes=emb["n_top_genes"],
        n_pcs=emb["n_pcs"],
        n_neighbors=emb["n_neighbors"],
        seed=snakemake.params.seed,
    )
    table.to_csv(snakemake.output[0], sep="\t", index=False)
