"""Thin adapter: the checkpoint tables per group, pseudobulk counts and immune cells in CSC niches
(cscniche.niche.checkpoint_tables)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import niche
from cscniche._smk import run_table_stage, step

with step(snakemake):
    run_table_stage(snakemake, niche.checkpoint_tables)
