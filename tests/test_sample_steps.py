"""One job per small sample (rule sample_steps): the steps' scripts run in one process (cscniche._smk.run_steps)."""

from __future__ import annotations

import pandas as pd
import pytest

from cscniche._smk import Files, StepJob, one_job_samples, run_steps

# a step script as the workflow's thin scripts are written: it reads ``snakemake`` and runs inside step()
STEP = """
from cscniche._smk import step
from cscniche._errors import InputError

with step(snakemake):
    text = open(snakemake.input.table).read() if snakemake.input else ""
    if snakemake.params.fail:
        raise InputError("no cells left after QC")
    with open(snakemake.output[0], "w") as f:
        f.write(text + snakemake.rule + ":" + snakemake.wildcards.sample + ":" + str(snakemake.params.n) + "\\n")
"""


def test_files_read_like_snakemake_named_lists():
    f = Files([(None, "raw.h5ad"), ("gene_sets", ["a.gmt", "b.gmt"]), ("markers", "m.tsv")])
    assert list(f) == ["raw.h5ad", "a.gmt", "b.gmt", "m.tsv"] and f[0] == "raw.h5ad"
    assert f.gene_sets == ["a.gmt", "b.gmt"] and f.markers == "m.tsv"
    assert f.items() == [("gene_sets", ["a.gmt", "b.gmt"]), ("markers", "m.tsv")]
    params = Files([("qc", {"min_genes": 200}), ("genes", ["X", "Y"])], flatten=False)
    assert params.genes == ["X", "Y"] and len(params) == 2 and dict(params.items())["qc"] == {"min_genes": 200}
    with pytest.raises(AttributeError):
        _ = f.nope
    job = StepJob({"rule": "qc", "input": [], "output": [], "log": [], "params": []}, config={}, wildcards={"sample": "s1"}, scriptdir="/x")  # fmt: skip
    assert job.wildcards.sample == "s1" and dict(job.wildcards.items()) == {"sample": "s1"} and not job.log


def _job(tmp_path, fail_at=None):
    script = tmp_path / "step.py"
    script.write_text(STEP)
    plan, previous = [], None
    for i, name in enumerate(["load", "qc", "embed"]):
        out = str(tmp_path / f"{name}.txt")
        plan.append(
            {
                "rule": name,
                "script": str(script),
                "input": [("table", previous)] if previous else [],
                "output": [(None, out)],
                "log": [(None, str(tmp_path / f"{name}.log"))],
                "params": [("n", i), ("fail", name == fail_at)],
            }
        )
        previous = out
    log = Files([("steps", str(tmp_path / "steps.tsv"))])
    # the first step's output stands for an intermediate file no other job reads (keep_intermediates: false)
    return Files([("plan", plan), ("scratch", [plan[0]["output"][0][1]])], flatten=False), log


def test_run_steps_runs_each_step_in_order_with_its_own_files(tmp_path):
    params, log = _job(tmp_path)

    class Job:  # what Snakemake passes to the script of rule sample_steps
        pass

    job = Job()
    job.params, job.log, job.config, job.wildcards = params, log, {}, Files([("sample", "s1")], flatten=False)
    run_steps(job)
    assert (tmp_path / "embed.txt").read_text().splitlines() == ["load:s1:0", "qc:s1:1", "embed:s1:2"]
    for name in ("load", "qc", "embed"):
        assert "modules imported:" in (tmp_path / f"{name}.log").read_text()  # each step logged to its own log
    times = pd.read_csv(tmp_path / "steps.tsv", sep="\t")
    assert list(times["step"]) == ["load", "qc", "embed"] and (times["seconds"] >= 0).all()
    assert not (tmp_path / "load.txt").exists()  # scratch: read by the next step, then deleted by the job


def test_a_failing_step_stops_the_job_with_one_line_naming_sample_and_step(tmp_path, capsys):
    params, log = _job(tmp_path, fail_at="qc")

    class Job:
        pass

    job = Job()
    job.params, job.log, job.config, job.wildcards = params, log, {}, Files([("sample", "s1")], flatten=False)
    with pytest.raises(SystemExit) as exc:
        run_steps(job)
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ERROR: ") and "no cells left after QC" in err[-1] and "s1" in err[-1]
    assert (tmp_path / "load.log").exists() and not (tmp_path / "qc.txt").exists()
    assert not (tmp_path / "load.txt").exists()  # scratch is deleted when a step fails too
    assert not (tmp_path / "embed.txt").exists() and not (tmp_path / "embed.log").exists()  # later steps never ran


def test_one_job_samples_by_input_size(tmp_path):
    (tmp_path / "small.h5ad").write_bytes(b"x" * 1024**2)  # 1 MB
    (tmp_path / "big.h5ad").write_bytes(b"x" * 3 * 1024**2)  # 3 MB
    mtx = tmp_path / "tenx"
    mtx.mkdir()
    for name in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"):
        (mtx / name).write_bytes(b"x" * 1024**2)  # a folder counts every file: 3 MB
    paths = ["small.h5ad", "big.h5ad", "tenx", "resources/demo/demo_p1.h5ad", "resources/downloads/src-1/manifest.tsv"]
    sheet = pd.DataFrame({"path": paths}, index=["small", "big", "tenx", "demo", "fetched"])
    assert one_job_samples(sheet, 2, workdir=tmp_path) == ["small", "demo"]
    assert one_job_samples(sheet, 4, workdir=tmp_path) == ["small", "big", "tenx", "demo"]
    assert one_job_samples(sheet, 0, workdir=tmp_path) == []
