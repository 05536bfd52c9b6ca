"""Thin adapter: fetch a sample's remote data into the download cache (cscniche.load.fetch_sample)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import load
from cscniche._smk import step

with step(snakemake):
    src = snakemake.params.source
    load.fetch_sample(
        Path(snakemake.output[0]).parent,
        sample=src["sample"],
        urls=src["url"].split(),
        checksums=src["checksum"].split(),
        geo=src["geo"] or None,
        geo_patterns=src["geo_files"].split() or ["*"],
        census=src["census"] or None,
        geo_base=snakemake.params.geo_base,
        retries=snakemake.params.retries,
    )
