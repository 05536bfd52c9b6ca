"""Thin adapter: a small sample's steps from load to the figures, one after another in this process
(cscniche._smk.run_steps; rule sample_steps)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche._smk import run_steps

run_steps(snakemake)
