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


def test_the_steps_inside_a_one_job_sample_are_read_from_its_steps_table(tmp_path):
    for sample, secs in (("s1", (2.5, 7.0)), ("s2", (3.5, 5.0))):
        (tmp_path / "logs" / sample).mkdir(parents=True)
        (tmp_path / f"logs/{sample}/steps.tsv").write_text(f"step\tseconds\nload\t{secs[0]}\nqc\t{secs[1]}\n")
    inner = bench_cohort.steps_of_one_job_samples(tmp_path)
    assert inner.groupby("step", sort=False)["seconds"].mean().to_dict() == {"load": 3.0, "qc": 6.0}
    assert sorted(inner["sample"].unique()) == ["s1", "s2"]
    assert bench_cohort.steps_of_one_job_samples(tmp_path / "none").empty
