"""Running on a cluster: the shipped SLURM profile, per-rule resources, and the demo on a real SLURM.

The tests marked ``slurm`` start a one-node SLURM with ../shared/tools/start-slurm.sh (root, Debian; it is
what CI runs) and skip, printing why, where it cannot be started. A cluster started by the tests is stopped
again at the end (../shared/tools/stop-slurm.sh); one that was already running is left alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import ROOT

PROFILE = ROOT / "profiles" / "slurm"
START_SLURM = ROOT.parent / "shared" / "tools" / "start-slurm.sh"
# Settings of the one-node CI cluster that a real site does not need (../shared/notes/slurm.md): no slurmdbd,
# so job states come from squeue, and a short wait before the first status query.
CI_FLAGS = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2")
RUN_TIMEOUT_S = 1200

# ---------------------------------------------------------------------------------------------------------
# The profile and the README


def test_profile_comments_every_setting_and_leaves_site_settings_to_the_user():
    text = (PROFILE / "config.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert cfg["executor"] == "slurm"
    assert cfg["retries"] >= 1  # an out-of-memory job comes back (with more memory: see the rules test)
    assert cfg["slurm-keep-successful-logs"] is True
    assert {"mem_mb", "runtime"} <= set(cfg["default-resources"])
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#") or not re.match(r"^\s*[\w-]+:", line):
            continue
        above = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        assert "#" in line or above.lstrip().startswith("#"), f"profile setting without a comment: {line!r}"
    # account and partition are the user's: present, but only as commented-out examples
    assert not {"slurm_account", "slurm_partition"} & set(cfg["default-resources"])
    for key in ("slurm_account", "slurm_partition"):
        assert re.search(rf"^\s*#\s*{key}:", text, re.M), key


def test_readme_explains_running_on_a_cluster():
    readme = (ROOT / "docs/cluster.md").read_text()  # linked from the README
    assert "## Running on a cluster" in readme
    section = readme.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "--workflow-profile profiles/slurm",
        "profiles/slurm/config.yaml",
        "slurm_account",
        "slurm_partition",
        ".snakemake/slurm_logs",
        "logs/",
        "rerun-incomplete",
        "--unlock",
        "conda",
    ):
        assert needed in section, needed


def test_snakemake_accepts_the_profile(tmp_path):
    wd = _workdir(tmp_path, "sample\tpath\ndemo_p1\tresources/demo/demo_p1.h5ad\n")
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd)]
        + ["--configfile", str(wd / "config.yaml"), "--workflow-profile", str(PROFILE), "-n", "--quiet", "rules"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"Using workflow specific profile {PROFILE}" in res.stdout + res.stderr


# ---------------------------------------------------------------------------------------------------------
# Resources declared by the rules (read from the parsed workflow, in a subprocess: Snakemake's API changes
# directory and keeps global state)

_INTROSPECT = r"""
import json, re, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.iocontainers import Wildcards
from snakemake.settings.enums import Quietness
from snakemake.settings.types import OutputSettings, ResourceSettings

class FakeInput(list):
    def __init__(self, paths, size_mb):
        super().__init__(paths)
        self._size_mb = size_mb
    @property
    def size_mb(self):
        return self._size_mb

root, probe_dir, probe_h5ad = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {}
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=root / "Snakefile", workdir=root)._workflow
    sample = wf.globals["samples"].index[0]
    wc = Wildcards(fromdict={"sample": sample, "demo": sample, "table": "qc.tsv"})

    def value(rule, name, inp, attempt):
        return rule.resources[name].evaluate(wc, input=inp, attempt=attempt, threads=1).value

    for r in wf.rules:
        src = Path(r.snakefile).read_text()
        start = re.search(rf"^(rule|checkpoint) {r.name}:", src, re.M)
        body = src[start.end():] if start else ""
        body = body[: (re.search(r"^\S", body, re.M) or re.search(r"\Z", body)).start()]  # up to the next top-level line
        info = dict(
            local=r.name in wf._localrules or bool(r.norun),
            runs_code=bool(r.script or r.shellcmd or r.notebook or r.wrapper or (r.run_func and not r.norun)),
            threads_declared=bool(re.search(r"^\s+threads:", body, re.M)),
            threads=int(m.group(1)) if (m := re.search(r"^\s+threads: (\d+)$", body, re.M)) else None,
            declared=sorted(k for k in r.resources if not k.startswith("_") and k != "tmpdir"),
        )
        if {"mem_mb", "runtime"} <= set(info["declared"]):
            for name in ("mem_mb", "runtime"):
                info[name] = {
                    "0mb_a1": value(r, name, FakeInput([], 0), 1),
                    "1000mb_a1": value(r, name, FakeInput([], 1000), 1),
                    "1000mb_a2": value(r, name, FakeInput([], 1000), 2),
                    "dir_a1": value(r, name, FakeInput([probe_dir], 0.004), 1),
                    "h5ad_20000_cells_1000mb_a1": value(r, name, FakeInput([probe_h5ad], 1000), 1),
                }
        out[r.name] = info
print("JSON" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    """Per rule: local or not, declared resources, mem_mb/runtime at 0/1000 MB input and attempts 1/2."""
    probe = tmp_path_factory.mktemp("mtx_folder")
    with open(probe / "matrix.mtx", "wb") as fh:  # a 500 MB file (sparse on disk) inside a folder input
        fh.truncate(500 * 1024**2)
    h5ad = probe / "cells.h5ad"  # what the resource functions read of an .h5ad: its number of cells
    with h5py.File(h5ad, "w") as f:
        f.create_group("X").attrs["shape"] = (20_000, 10)
    res = subprocess.run([sys.executable, "-c", _INTROSPECT, str(ROOT), str(probe), str(h5ad)], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(res.stdout.split("JSON", 1)[1])


def test_every_cluster_rule_declares_threads_memory_and_runtime_scaled_by_input_and_attempt(rules):
    problems = []
    for name, r in rules.items():
        if r["local"] or not r["runs_code"]:
            continue
        if not r["threads_declared"]:
            problems.append(f"{name}: no threads:")
        if not {"mem_mb", "runtime"} <= set(r["declared"]):
            problems.append(f"{name}: resources lack mem_mb/runtime ({r['declared']})")
            continue
        mem, rt = r["mem_mb"], r["runtime"]
        if not mem["1000mb_a1"] > mem["0mb_a1"] > 0:
            problems.append(f"{name}: mem_mb does not grow with the input size {mem}")
        if not mem["1000mb_a2"] >= 2 * mem["1000mb_a1"] - 1:
            problems.append(f"{name}: mem_mb is not doubled on a retry {mem}")
        if not rt["1000mb_a2"] > rt["1000mb_a1"] > 0:
            problems.append(f"{name}: runtime does not grow on a retry {rt}")
    assert not problems, "\n".join(problems)


def test_qc_asks_for_the_memory_of_the_scrublet_batches_it_runs_at_once(rules):
    """QC streams its input but holds one Scrublet batch (DOUBLET_BATCH cells) per thread: memory grows with the
    input up to threads x DOUBLET_BATCH cells. A 1,000 MB .h5ad of 20,000 cells asks for the memory of that share."""
    from cscniche.preprocess._qc import DOUBLET_BATCH

    threads = rules["qc"]["threads"]
    assert threads == 2, rules["qc"]
    assert f"batch_cells={threads * DOUBLET_BATCH:_}" in (ROOT / "workflow/rules/preprocess.smk").read_text()
    mem = rules["qc"]["mem_mb"]
    assert mem["1000mb_a1"] > mem["0mb_a1"] > 0
    share = mem["0mb_a1"] + (mem["1000mb_a1"] - mem["0mb_a1"]) * threads * DOUBLET_BATCH / 20_000
    assert abs(mem["h5ad_20000_cells_1000mb_a1"] - share) <= 1, mem
    # the measured peak of two workers on 5,000 cells each of 1,960 genes per cell (174 MB together) and the parent:
    # 7.0-7.5 GB (benchmarks/bench_pipeline.py, 100,000 and 1,000,000 cells); the request covers it
    assert mem["0mb_a1"] + (mem["1000mb_a1"] - mem["0mb_a1"]) * 174 / 1000 >= 7_500


def test_tiny_rules_and_downloads_run_locally(rules):
    assert rules["demo_data"]["local"] and rules["cohort_tables"]["local"] and rules["all"]["local"]
    for name, r in rules.items():
        if re.search(r"download|fetch", name):
            assert r["local"], f"{name} downloads: it should be a localrule (compute nodes may lack network)"
    for heavy in ("load", "qc", "embed", "score", "neighbours", "checkpoints", "export"):
        assert not rules[heavy]["local"], heavy


def test_a_folder_input_counts_with_the_files_inside(rules):
    # a 10x mtx folder of 500 MB asks for as much memory as a 500 MB file (Snakemake's own size_mb sees 4 kB)
    mem = rules["load"]["mem_mb"]
    file_500 = mem["0mb_a1"] + (mem["1000mb_a1"] - mem["0mb_a1"]) / 2
    assert abs(mem["dir_a1"] - file_500) <= 1, mem


# ---------------------------------------------------------------------------------------------------------
# The demo on a real one-node SLURM


def _skip(reason: str):
    print(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm():
    """Start SLURM with ../shared/tools/start-slurm.sh; skip, printing why, where that cannot be done."""
    if not START_SLURM.exists():
        _skip(f"SLURM not started: {START_SLURM} is absent (it comes with ../shared beside the repo)")
    if sys.platform != "linux" or os.geteuid() != 0:
        _skip("SLURM not started: start-slurm.sh installs and starts the daemons as root on Linux (CI runs as root)")
    if not (shutil.which("apt-get") or shutil.which("sbatch")):
        _skip("SLURM not started: neither SLURM nor apt-get (to install Debian's SLURM) is available")
    was_up = _slurm_is_up()
    try:
        res = subprocess.run(["bash", str(START_SLURM)], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        _skip("SLURM not started: start-slurm.sh did not finish within 10 min")
    if res.returncode != 0:
        _skip(f"SLURM could not be started (start-slurm.sh exit {res.returncode}): {(res.stdout + res.stderr)[-1500:]}")
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    yield {"jobcomp": Path(re.search(r"^JobCompLoc\s*=\s*(\S+)", conf, re.M).group(1))}
    if not was_up:  # started here (as on CI): stop it again; a cluster that was already up is left alone
        subprocess.run(["bash", str(START_SLURM.with_name("stop-slurm.sh"))], capture_output=True, timeout=120)


def _slurm_is_up() -> bool:
    if not shutil.which("scontrol"):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return "is UP" in ping.stdout


def _run_on_slurm(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(workdir / "config.yaml"), "--workflow-profile", str(PROFILE), *CI_FLAGS, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the snakemake this test started, and its children only
        out, _ = proc.communicate()
        out += f"\n[test] killed after {RUN_TIMEOUT_S} s"
    (workdir / "snakemake.out").write_text(out)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _workdir(path: Path, sheet: str, **overrides) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "samples.tsv").write_text(sheet)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["samples"] = "samples.tsv"
    cfg.update(overrides)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def slurm_runs(slurm, tmp_path_factory):
    """The demo (one sample, one job per step) and a sample with log-normalised values (all its steps in one job,
    rule sample_steps), run at the same time through SLURM."""
    import anndata as ad
    import numpy as np
    import scanpy as sc

    demo_sheet = "sample\tpath\tformat\tcell_type_key\ndemo_p2\tresources/demo/demo_p2.h5ad\th5ad\ttruth_cell_type\n"
    good = _workdir(tmp_path_factory.mktemp("slurm_demo"), demo_sheet, one_job_below_mb=0)
    bad = _workdir(tmp_path_factory.mktemp("slurm_bad"), "sample\tpath\nlognorm\tlognorm.h5ad\n")
    a = ad.AnnData(np.random.default_rng(0).poisson(3, (60, 50)).astype(np.float32))
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.write_h5ad(bad / "lognorm.h5ad")
    with ThreadPoolExecutor(2) as pool:
        good_run = pool.submit(_run_on_slurm, good)
        bad_run = pool.submit(_run_on_slurm, bad, "--retries", "1")  # one retry keeps the test short
        return {"good": (good, good_run.result()), "bad": (bad, bad_run.result()), **slurm}


def _jobcomp(path: Path, workdir: Path) -> dict[str, dict[str, str]]:
    """The scheduler's record of every finished job that ran in ``workdir``, by SLURM job id."""
    records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in path.read_text().splitlines()]
    return {r["JobId"]: r for r in records if r.get("WorkDir") == str(workdir)}


_BLOCK = re.compile(r"^(local)?rule (\w+):\n((?:    .*\n)+)", re.M)
_SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def _submitted_jobs(out: str) -> tuple[list[dict], list[dict]]:
    """Snakemake's output, read as (jobs run locally, jobs submitted to SLURM), in order.

    Each job: rule, snakemake jobid, threads, mem_mb and runtime as Snakemake printed them; a submitted job also
    its SLURM job id and log. A retried job is printed and submitted again under the same snakemake jobid.
    """
    blocks = []
    for local, rule, body in _BLOCK.findall(out):
        res = dict(re.findall(r"(\w+)=([^,\s]+)", (re.search(r"resources: (.*)", body) or [""])[0]))
        threads = re.search(r"^    threads: (\d+)", body, re.M)
        blocks.append(
            {
                "rule": rule,
                "local": bool(local),
                "jobid": re.search(r"^    jobid: (\d+)", body, re.M).group(1),
                "threads": int(threads.group(1)) if threads else 1,
                "mem_mb": int(res.get("mem_mb", 0)),
                "runtime": int(res.get("runtime", 0)),
            }
        )
    pending = [b for b in blocks if not b["local"]]
    submitted = []
    for jobid, slurm_id, log in _SUBMITTED.findall(out):
        job = next(b for b in pending if b["jobid"] == jobid)  # the earliest printed, not yet submitted
        pending.remove(job)
        submitted.append({**job, "slurm_id": slurm_id, "log": Path(log)})
    assert not pending, f"printed but never submitted: {pending}"
    return [b for b in blocks if b["local"]], submitted


def _explain(workdir: Path, out: str) -> str:
    logs = sorted(str(p.relative_to(workdir)) for p in (workdir / ".snakemake/slurm_logs").rglob("*.log"))
    return f"{out[-4000:]}\nkept SLURM logs: {logs}"


@pytest.mark.slurm
@pytest.mark.slow
def test_demo_runs_through_the_scheduler_with_the_resources_each_rule_asks_for(slurm_runs):
    wd, run = slurm_runs["good"]
    assert run.returncode == 0, _explain(wd, run.stdout)
    for rel in ("results/demo_p2/cells.tsv.gz", "results/demo_p2/checkpoints.tsv", "results/cohort/qc.tsv"):
        assert (wd / rel).stat().st_size > 0, rel

    local, subs = _submitted_jobs(run.stdout)
    remote = {j["rule"] for j in subs}
    assert {"load", "qc", "embed", "score", "neighbours", "checkpoints", "export"} <= remote
    assert {"demo_data", "cohort_tables"} <= {j["rule"] for j in local} and not remote & {"demo_data", "cohort_tables"}
    assert len({j["jobid"] for j in subs}) == len(subs), "every non-local job is submitted once"

    # the scheduler's side: each submitted job finished there, in this working directory, as asked
    done = _jobcomp(slurm_runs["jobcomp"], wd)
    assert set(done) == {j["slurm_id"] for j in subs}, (sorted(done), subs)
    for job in subs:
        rec = done[job["slurm_id"]]
        assert rec["JobState"] == "COMPLETED", (job, rec)
        assert f"mem={job['mem_mb']}M" in rec["Tres"] and int(rec["ProcCnt"]) == job["threads"], (job, rec)
        assert int(rec["TimeLimit"]) == job["runtime"], (job, rec)
        assert job["log"].exists(), job  # slurm-keep-successful-logs: true
    assert next(j for j in subs if j["rule"] == "embed")["threads"] == 2  # threads arrive as --cpus-per-task
    # squeue still lists the recent ones (MinJobAge), each with its rule in the comment
    ids = ",".join(j["slurm_id"] for j in subs)
    seen = subprocess.run(["squeue", "-h", "-t", "all", "-j", ids, "-o", "%i %k"], capture_output=True, text=True)
    listed = dict(line.split(" ", 1) for line in seen.stdout.splitlines() if " " in line)
    assert listed, seen.stdout + seen.stderr
    by_id = {j["slurm_id"]: j["rule"] for j in subs}
    for slurm_id, comment in listed.items():
        assert comment.startswith(f"rule_{by_id[slurm_id]}"), (slurm_id, comment)


@pytest.mark.slurm
@pytest.mark.slow
def test_failing_job_is_retried_with_more_memory_and_its_log_is_kept_and_named(slurm_runs):
    wd, run = slurm_runs["bad"]
    assert run.returncode != 0
    _, subs = _submitted_jobs(run.stdout)
    # a small sample: all its steps are one job (rule sample_steps); the first attempt and one retry
    assert [j["rule"] for j in subs] == ["sample_steps", "sample_steps"], subs
    errors = re.findall(r"^Error in rule sample_steps:\n((?:    .*\n)+)", run.stdout, re.M)
    assert len(errors) == 2, run.stdout[-4000:]
    done = _jobcomp(slurm_runs["jobcomp"], wd)
    for job, error in zip(subs, errors, strict=True):
        assert f".snakemake/slurm_logs/rule_sample_steps/lognorm/{job['slurm_id']}.log" in error  # named ...
        assert job["log"].exists() and "ERROR: sample 'lognorm'" in job["log"].read_text(), job  # ... and kept
        rec = done[job["slurm_id"]]
        assert rec["JobState"] == "FAILED" and f"mem={job['mem_mb']}M" in rec["Tres"], (job, rec)
        assert int(rec["TimeLimit"]) == job["runtime"], (job, rec)
    first, retry = subs
    assert retry["mem_mb"] >= 2 * first["mem_mb"] - 1 and retry["runtime"] > first["runtime"], subs
    assert not (wd / "results/lognorm/intermediate/loaded.h5ad").exists()
    assert "look log-normalised" in (wd / "logs/lognorm/load.log").read_text()  # the step's own log names the cause
