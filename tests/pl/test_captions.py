"""Report captions: rendered from the run's own config (Jinja on snakemake.config), valid reStructuredText.

Every caption in workflow/report/ is rendered as Snakemake renders it (Jinja, then docutils ``publish_parts``) for
the shipped config and variants of the settings the captions describe; any docutils system message (a WARNING or
ERROR block in the report, e.g. an unescaped ``***`` star legend) or undefined config key fails the test.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import jinja2
import pytest
import yaml
from conftest import ROOT
from docutils.core import publish_parts

CAPTIONS = sorted((ROOT / "workflow/report").glob("*.rst"))
CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _variant(**changes) -> dict:
    cfg = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg


VARIANTS = {
    "shipped": _variant(),
    "quantile": _variant(csc__rule="quantile", csc__quantile=0.8),
    "fixed_qc": _variant(qc__adaptive=False, qc__doublets="off"),
    "two_sided_qc": _variant(qc__n_mads_high=3, qc__doublets="flag"),
}


def render(path, config) -> str:
    """The caption as HTML, as the report shows it; raises on an undefined name."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    snakemake = SimpleNamespace(config=config, wildcards=SimpleNamespace(sample="demo_p1"))
    text = env.from_string(path.read_text()).render(snakemake=snakemake, categories={}, files={})
    return publish_parts(text, writer="html")["body"]  # as snakemake.report renders captions


def test_there_are_captions():
    assert len(CAPTIONS) >= 14


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("caption", CAPTIONS, ids=lambda p: p.name)
def test_caption_renders_without_docutils_messages(caption, variant):
    html = render(caption, VARIANTS[variant])
    assert "system-message" not in html and "problematic" not in html, html
    assert "{{" not in html and "{%" not in html


def test_captions_describe_the_rule_and_thresholds_that_ran():
    umap = ROOT / "workflow/report/umap.rst"
    fdr = render(umap, VARIANTS["shipped"])
    assert "definition <tt" in fdr and "FDR of at most 0.1" in fdr and "quantile of the sample" not in fdr
    assert "calibrated, phenotype, quantile" in fdr
    q = render(umap, VARIANTS["quantile"])
    assert "0.8 quantile" in q and "random gene sets" not in q
    pheno = render(umap, _variant(csc__definitions=["phenotype", "calibrated"], csc__phenotype="CD44+THY1+"))
    assert "marker phenotype CD44+THY1+" in pheno and "random gene sets" not in pheno
    comp = ROOT / "workflow/report/cohort_composition.rst"
    assert "close to" not in render(comp, VARIANTS["shipped"]) and "close to 20 %" in render(comp, VARIANTS["quantile"])
    qc = ROOT / "workflow/report/qc_cells.rst"
    assert "qc.n_mads</tt> = 5" in render(qc, VARIANTS["shipped"]).replace('<tt class="docutils literal">', "")
    fixed = render(qc, VARIANTS["fixed_qc"])
    assert "Fixed thresholds" in fixed and "= 200" in fixed and "median" not in fixed.split("Mitochondrial")[0]
    assert "n_mads_high" in render(qc, VARIANTS["two_sided_qc"])
    legend = render(ROOT / "workflow/report/immune_neighbours.rst", VARIANTS["shipped"])
    assert '<tt class="docutils literal">***</tt>' in legend  # the star legend is shown, literally


def test_the_check_catches_an_unescaped_star_legend(tmp_path):
    bad = tmp_path / "bad.rst"
    bad.write_text("Marks are FDRs (* < 0.05, ** < 0.01, *** < 0.001).\n")  # the legend before issue 17
    assert "system-message" in render(bad, VARIANTS["shipped"])
