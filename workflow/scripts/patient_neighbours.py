"""Thin adapter: kNN neighbour enrichment of one patient's samples on a shared, corrected embedding (cscniche.niche.patient_neighbours)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

import anndata as ad

from cscniche import niche
from cscniche._smk import section, step

with step(snakemake):
    adatas = [ad.read_h5ad(p) for p in snakemake.input]
    table = niche.patient_neighbours(
        adatas,
        patient=snakemake.wildcards.patient,
        neighbours=section(snakemake, "neighbours"),
        embedding=section(snakemake, "embedding"),
        seed=snakemake.params.seed,
    )
    table.to_csv(snakemake.output[0], sep="\t", index=False)
