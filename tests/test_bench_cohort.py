"""benchmarks/bench_cohort.py: a step's import cost counts the packages it imports inside functions too."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_cohort  # noqa: E402

from cscniche._smk import HEAVY_MODULES, step  # noqa: E402


def test_step_logs_the_heavy_packages_it_loaded_and_the_benchmark_reads_them(tmp_path):
    log = tmp_path / "logs/s1/score.log"
    log.parent.mkdir(parents=True)
    smk = SimpleNamespace(log=[str(log)], wildcards={"sample": "s1"}, rule="score", config={})
    with step(smk):
        import json  # noqa: F401  (a step body)
    mods = bench_cohort.modules_of_step(tmp_path, "score")
    assert mods == [m for m in HEAVY_MODULES if m in sys.modules]  # the test process has loaded several
    assert "anndata" in mods and bench_cohort.modules_of_step(tmp_path, "embed") == []


def test_import_seconds_times_the_deferred_packages(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import json\nfrom snakemake import x\n")  # snakemake lines are skipped
    bare = bench_cohort.import_seconds(script, repeats=1)
    with_mods = bench_cohort.import_seconds(script, repeats=1, modules=["scipy.stats"])
    assert math.isfinite(bare) and math.isfinite(with_mods) and with_mods > bare
    assert math.isnan(bench_cohort.import_seconds(script, repeats=1, modules=["not_a_package_xyz"]))
