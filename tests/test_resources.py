"""The shipped tables are found through importlib.resources, from any working directory."""

import subprocess
import sys

import pytest
from conftest import DATA

import cscniche as cn
from cscniche import _params
from cscniche._resources import bundled, resolve


@pytest.mark.parametrize(
    "name",
    [
        "markers.tsv",
        "compartments.tsv",
        "checkpoints.tsv",
        "genesets/csc_signatures.gmt",
        "reference/gene_positions_hg38.tsv.gz",
    ],  # fmt: skip
)
def test_bundled_is_the_shipped_file(name):
    assert bundled(name) == (DATA / name).resolve()
    assert resolve(f"cscniche:{name}") == bundled(name)


def test_own_path_unchanged_and_unknown_name_lists_shipped(tmp_path):
    assert resolve(tmp_path / "mine.tsv") == tmp_path / "mine.tsv"
    with pytest.raises(FileNotFoundError, match="ships no table 'nope.tsv'; it ships: .*markers.tsv"):
        resolve("cscniche:nope.tsv")


def test_every_file_default_is_bundled():
    defaults = [
        _params.AnnotationParams().markers,
        _params.AnnotationParams().compartments,
        *_params.ScoringParams().gene_sets,
        _params.CnvParams().gene_positions,
        _params.CheckpointsParams().genes,
    ]
    assert all(d.startswith("cscniche:") for d in defaults), defaults
    for d in defaults:
        assert resolve(d).is_file()


def test_library_defaults_work_from_another_directory(tmp_path):
    """The readers resolve the defaults from a directory that is not the repository (fresh interpreter)."""
    code = (
        "import cscniche as cn\n"
        "from cscniche.preprocess._annotate import read_markers, read_compartment_rules\n"
        "from cscniche.stemness._score import read_gmt\n"
        "from cscniche.niche._checkpoints import read_checkpoints\n"
        "a = cn.AnnotationParams()\n"
        "print(len(read_markers(a.markers)), len(read_compartment_rules(a.compartments)),"
        " len(read_gmt(cn.ScoringParams().gene_sets[0])), len(read_checkpoints(cn.CheckpointsParams().genes)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    n_markers, n_rules, n_sets, n_checkpoints = map(int, out.stdout.split())
    assert n_markers > 10 and n_rules >= 5 and n_sets >= 4 and n_checkpoints > 10
    assert cn.AnnotationParams().markers == "cscniche:markers.tsv"
