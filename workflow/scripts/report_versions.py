"""Thin adapter: package versions and the configuration used (cscniche.report.software_report)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # the cscniche library, uninstalled

from cscniche import report
from cscniche._smk import step

with step(snakemake):
    items = report.software_report(snakemake.params.config)
    items["versions"].to_csv(snakemake.output.versions, sep="\t", index=False)
    Path(snakemake.output.config).write_text(items["config"])
    Path(snakemake.output.html).write_text(items["html"])
