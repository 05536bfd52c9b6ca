"""Interrupted runs: stop the workflow mid-rule (Ctrl-C, then a hard kill), rerun, get the same tables.

The documented recovery (docs/troubleshooting.md, linked from the README):

    snakemake --cores 4 --configfile my.yaml                              # after Ctrl-C / SIGTERM
    snakemake --unlock --configfile my.yaml && \\
        snakemake --cores 4 --configfile my.yaml --rerun-incomplete       # after a hard kill (SIGKILL, power loss)
"""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_snakemake
from test_bad_inputs import small

#: the core tables (the targets of these runs: figures, crosstalk and cohort tables are left out for time)
TABLES = [
    "results/s1/cells.tsv.gz",
    "results/s1/immune_neighbours.tsv",
    "results/s1/checkpoints.tsv",
    "results/s1/qc.tsv",
    "results/s1/signature_coverage.tsv",
    "results/s1/malignant_calls.tsv",
]


def _workdir(wd: Path) -> Path:
    wd.mkdir(parents=True, exist_ok=True)
    small().write_h5ad(wd / "s1.h5ad")
    (wd / "samples.tsv").write_text("sample\tpath\tcell_type_key\ns1\ts1.h5ad\ttruth_cell_type\n")
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["samples"] = "samples.tsv"
    cfg["neighbours"]["n_permutations"] = 50
    cfg["keep_intermediates"] = False  # the temp() path: intermediates are cleaned up after the resumed run
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    return wd


def _args(wd: Path) -> list[str]:
    return ["--configfile", str(wd / "config.yaml"), "--cores", "1", *TABLES]


def _start(wd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd), *_args(wd)]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # SIGINT's default action, as in a terminal: a parent started without job control (a CI runner, nohup,
        # `cmd &` in a script) passes SIGINT on ignored, and the run would never see the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _interrupt_when_running(proc: subprocess.Popen, log: Path, sig: signal.Signals, timeout: float = 400) -> str:
    """Wait until the step writing ``log`` has started (its script opened the log), then signal the process group."""
    t0 = time.time()
    while not log.exists():
        assert proc.poll() is None, f"the run ended before {log.name} started:\n{proc.stderr.read()[-3000:]}"
        assert time.time() - t0 < timeout, f"{log} never appeared"
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "the run was not interrupted"
    return err


@pytest.mark.slow
def test_interrupted_runs_resume_to_identical_tables(tmp_path):
    reference = _workdir(tmp_path / "reference")
    run_snakemake(reference, *_args(reference))

    wd = _workdir(tmp_path / "interrupted")
    # 1. Ctrl-C (SIGINT to the process group) while the embedding runs: Snakemake releases its lock and removes
    #    the step's output, or, when the Ctrl-C lands while the step writes it (a CI machine's scheduling decides),
    #    keeps it marked incomplete, which the default profile (profiles/default: rerun-incomplete) recomputes.
    #    Either way the plain rerun below resumes: it must get as far as scoring.
    _interrupt_when_running(_start(wd), wd / "logs/s1/embed.log", signal.SIGINT)
    # 2. SIGKILL of everything while scoring: no cleanup at all; the output may be half-written.
    _interrupt_when_running(_start(wd), wd / "logs/s1/score.log", signal.SIGKILL)
    assert not (wd / "results/s1/cells.tsv.gz").exists()
    res = run_snakemake(wd, *_args(wd), check=False)
    assert res.returncode != 0 and "--unlock" in res.stdout + res.stderr  # the stale lock is reported
    run_snakemake(wd, "--unlock", "--configfile", str(wd / "config.yaml"))
    run_snakemake(wd, *_args(wd), "--rerun-incomplete")
    for rel in TABLES:
        assert filecmp.cmp(reference / rel, wd / rel, shallow=False), rel
    assert not list((wd / "results").rglob("intermediate/*.h5ad"))  # temporary files cleaned up


def test_a_step_that_wrote_its_outputs_finishes_through_a_ctrl_c(tmp_path):
    """A Ctrl-C after the step's body (its outputs written) must not fail the step: cscniche._smk.step ignores SIGINT
    for the rest of a Snakemake script's process, so Snakemake records the job as done, not as failed with its
    complete output left behind. Without that, the script dies of KeyboardInterrupt on the signal it sends itself."""
    script = tmp_path / "s.py"
    script.write_text(
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from cscniche._smk import step\n"
        "with step(snakemake):\n"
        "    open(snakemake.output[0], 'w').write('done')\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "import time; time.sleep(0.5)\n"  # the signal arrives while the process ends
    )
    (tmp_path / "Snakefile").write_text('rule a:\n    output: "out.txt"\n    log: "a.log"\n    script: "s.py"\n')
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(tmp_path / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "1", "out.txt"],
        capture_output=True, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "out.txt").read_text() == "done"
