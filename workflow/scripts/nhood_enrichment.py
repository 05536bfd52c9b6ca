"""Thin adapter: squidpy neighbourhood enrichment, CSC/nonCSC vs immune groups (cscniche.niche.nhood_enrichment)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import niche
from cscniche._smk import run_table_stage, step

with step(snakemake):
    run_table_stage(snakemake, niche.nhood_enrichment)
