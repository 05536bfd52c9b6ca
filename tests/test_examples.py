"""The shipped example configs for public liver-cancer data validate and plan a fetch for every sample (offline dry run)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT


@pytest.mark.parametrize("name", ["gse125449", "gse149614"])
def test_example_config_plans_fetch_and_load(name):
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", f"config/examples/{name}.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    sheet = pd.read_csv(ROOT / f"config/examples/{name}_samples.tsv", sep="\t", dtype=str).fillna("")
    n_sources = sheet[["geo", "geo_files"]].drop_duplicates().shape[0]
    counts = {
        ln.split()[0]: int(ln.split()[1])
        for ln in res.stdout.splitlines()
        if ln[:1].isalpha() and len(ln.split()) == 2 and ln.split()[1].isdigit()
    }
    assert counts["fetch"] == n_sources and counts["load"] == len(sheet)
    assert all(sheet["cell_type_key"] != "")
