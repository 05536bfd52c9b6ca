"""The workflow runs with the cscniche library not installed, as in the conda environments of envs/.

envs/*.yaml carry the dependencies, not cscniche: every script puts the checkout's ``src`` first on ``sys.path``.
Snakemake gives scripts ``scriptdir`` as ``<repo>/workflow/rules/../scripts``; without ``resolve()`` its
``parents[1]`` is ``workflow/rules`` and every step failed with ``No module named 'cscniche'``, hidden on
machines where the package is pip-installed (found 2026-12-01, issue 18's before/after benchmark).
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig

import yaml
from conftest import ROOT


def test_every_script_finds_the_library_from_its_own_path():
    for script in sorted((ROOT / "workflow/scripts").glob("*.py")):
        text = script.read_text()
        if "cscniche" not in text:
            continue
        assert re.search(r"Path\(snakemake\.scriptdir\)\.resolve\(\)\.parents\[1\] / \"src\"", text), script.name


def test_a_step_runs_without_the_package_installed(tmp_path):
    """A venv with the test environment's dependencies but not cscniche runs the demo_data step for real."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # a path added by a .pth file is not scanned for .pth files: the editable install's hook (a .pth in purelib)
    # does not run, so cscniche is importable only from the checkout's src
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = str(venv / "bin/python")
    probe = subprocess.run([py, "-c", "import cscniche"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'cscniche'" in probe.stderr, probe.stderr
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "samples.tsv").write_text("sample\tpath\ndemo_p1\tresources/demo/demo_p1.h5ad\n")
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["samples"] = "samples.tsv"
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [py, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd), "--cores", "1",
           "resources/demo/demo_p1.h5ad", "--configfile", str(wd / "config.yaml")]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (wd / "resources/demo/demo_p1.h5ad").stat().st_size > 100_000
