"""The report: the demo workflow, then `snakemake --report`; every figure is in results/ (PNG and PDF) and in
the report (HTML and zip), non-empty; a sample without coordinates gets the placeholder tissue map. The report has
no docutils warning block and opens in a real headless browser (Debian's chromium). On the same finished run: the
end-of-run summary, and a CSC-definition change reruns only the steps after the CSC call (intermediates kept)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import zipfile

import matplotlib.image as mpimg
import pandas as pd
import pytest
import yaml
from conftest import DATA, ROOT, run_snakemake

from cscniche import pl as plotting

pytestmark = pytest.mark.slow

SAMPLES = ("demo_p1", "flat")


def _not_blank_png(data: bytes) -> bool:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(io.BytesIO(data), format="png")
    return float(img[..., :3].std()) > 0.01


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """Demo p1 (spatial, marker annotation) and a smaller demo without coordinates ('flat'), then both reports."""
    from cscniche.demo import DEFAULT_SIZES, make_demo
    from cscniche.stemness._score import read_gmt

    wd = tmp_path_factory.mktemp("report")
    flat = make_demo(
        seed=3,
        sizes={k: max(30, v // 3) for k, v in DEFAULT_SIZES.items()},
        gene_sets=read_gmt(DATA / "genesets/csc_signatures.gmt"),
    )
    del flat.obsm["spatial"]
    flat.write_h5ad(wd / "flat.h5ad")
    (wd / "samples.tsv").write_text(
        "sample\tpath\tformat\tcell_type_key\n"
        "demo_p1\tresources/demo/demo_p1.h5ad\th5ad\t\n"
        "flat\tflat.h5ad\th5ad\ttruth_cell_type\n"
    )
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["samples"] = "samples.tsv"
    cfg["neighbours"]["n_permutations"] = 200  # speed; the statistics are tested elsewhere
    cfg["figures"] = {"sample_pdf": True}  # off by default (issue 18); the PDF path is tested here
    # demo_p1 (the demo always counts as small) runs as one job (rule sample_steps), flat (~1 MB) one job per
    # step: the report must hold the figures of both
    cfg["one_job_below_mb"] = 0.01
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = ("--configfile", str(wd / "config.yaml"))
    run = run_snakemake(wd, *args, "--cores", "2")
    (wd / "run.stderr").write_text(run.stderr)
    run_snakemake(wd, *args, "--report", "report.html")
    run_snakemake(wd, *args, "--report", "report.zip")
    return wd


def _expected_figures() -> list[str]:
    out = [f"results/{s}/figures/{f}" for s in SAMPLES for f in plotting.SAMPLE_FIGURES]
    out += [f"results/cohort/figures/{f}" for f in plotting.COHORT_FIGURES + plotting.QC_FIGURES]
    return out


def test_every_figure_is_written_as_png_and_pdf(report_run):
    for stem in _expected_figures():
        png, pdf = report_run / f"{stem}.png", report_run / f"{stem}.pdf"
        assert _not_blank_png(png.read_bytes()), png
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000, pdf
    versions = (report_run / "results/report/software_versions.tsv").read_text()
    assert "scanpy\t" in versions and "snakemake\t" in versions
    used = yaml.safe_load((report_run / "results/report/config.yaml").read_text())
    assert used["samples"] == "samples.tsv" and used["neighbours"]["n_permutations"] == 200


def test_html_report_embeds_every_figure_with_caption_and_category(report_run):
    html = (report_run / "report.html").read_text()
    embedded = {}
    for m in re.finditer(r'"(results/[^"]+\.png)": (\{.*?"data_uri": "data:image/png;[^,]*base64,[^"]+"\})', html):
        entry = json.loads(m.group(2))
        embedded[m.group(1)] = entry
    assert set(embedded) == {f"{s}.png" for s in _expected_figures()}
    for path, entry in embedded.items():
        data = base64.b64decode(entry["data_uri"].split("base64,", 1)[1])
        assert _not_blank_png(data), path
        assert entry["caption"].strip(), path  # every figure has its caption
    assert embedded["results/flat/figures/tissue_map.png"]["labels"] == {
        "sample": "flat",
        "figure": "Tissue map: CSC and immune cells",
    }
    for category in ("Per sample", "Cohort", "QC", "Software and configuration"):
        assert f'"{category}"' in html, category
    for name in ("software_versions.html", "software_versions.tsv", "config.yaml"):
        assert f'"results/report/{name}"' in html, name


def test_zip_report_holds_every_figure_non_empty(report_run):
    with zipfile.ZipFile(report_run / "report.zip") as z:
        pngs = [i for i in z.infolist() if i.filename.endswith(".png")]
        names = sorted(i.filename.rsplit("/", 1)[1] for i in pngs)
        expected = sorted(f"{p.rsplit('/', 1)[1]}.png" for p in _expected_figures())
        assert names == expected
        for i in pngs:
            assert _not_blank_png(z.read(i)), i.filename


def test_sample_without_coordinates_gets_the_placeholder_tissue_map(report_run):
    import anndata as ad

    flat = ad.read_h5ad(report_run / "results/flat/scored.h5ad", backed="r")
    assert "spatial" not in flat.obsm
    spatial = (report_run / "results/demo_p1/figures/tissue_map.png").stat().st_size
    placeholder = (report_run / "results/flat/figures/tissue_map.png").stat().st_size
    assert placeholder < spatial / 4  # a text panel, not a map of thousands of cells
    log = (report_run / "logs/flat/plot_sample.log").read_text()
    assert "sample 'flat': no spatial coordinates (obsm['spatial']); the tissue map is a placeholder" in log
    assert "no spatial coordinates" not in (report_run / "logs/demo_p1/plot_sample.log").read_text()


def _embedded_pngs(html: str) -> dict[str, str]:
    found = re.finditer(r'"(results/[^"]+\.png)": \{.*?"data_uri": "(data:image/png;[^,]*base64,[^"]+)"', html)
    return {m.group(1): m.group(2) for m in found}


def test_report_has_no_docutils_warning_or_error_block(report_run):
    html = (report_run / "report.html").read_text()
    for marker in ("system-message", "System Message", "problematic", "Docutils System Messages"):
        assert marker not in html, f"{marker!r} in report.html: a caption is not valid reStructuredText"
    assert "calibrated, phenotype, quantile" in html and "FDR of at most 0.1" in html  # the definitions that ran
    assert '"results/summary.tsv"' in html and '"Summary"' in html


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install -y chromium)")
    return exe


def _browser(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_report_opens_in_headless_chromium_and_every_figure_is_drawn(report_run, tmp_path):
    report = report_run / "report.html"
    # 1. the report's own page: the app renders its menu (the categories) and the workflow description
    dom = _browser("--virtual-time-budget=15000", "--dump-dom", report.as_uri()).stdout
    assert "<body" in dom and len(dom) > len(report.read_text()) // 2, dom[:2000]
    for text in ("Summary", "Per sample", "Cohort", "QC", "cancer-stem-cell"):
        assert text in dom, text
    # 2. a screenshot of it is not blank
    shot = tmp_path / "report.png"
    _browser("--window-size=1400,1000", "--virtual-time-budget=15000", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file() and _not_blank_png(shot.read_bytes()), "the report renders as a blank page"
    # 3. every figure embedded in the report decodes and is drawn by the browser (naturalWidth > 0)
    figures = _embedded_pngs(report.read_text())
    assert set(figures) == {f"{s}.png" for s in _expected_figures()}
    page = tmp_path / "figures.html"
    imgs = "".join(f'<img alt="{name}" src="{uri}">' for name, uri in figures.items())
    page.write_text(
        f"<html><head><title>pending</title></head><body>{imgs}<script>window.onload = () => {{"
        "const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 10)).map(i => i.alt);"
        "document.title = 'drawn ' + (document.images.length - bad.length) + ' failed ' + bad.join(',');"
        "}</script></body></html>"
    )
    dom = _browser("--virtual-time-budget=15000", "--dump-dom", page.as_uri()).stdout
    title = re.search(r"<title>(.*?)</title>", dom).group(1)
    assert title == f"drawn {len(figures)} failed ", title


def test_end_of_run_summary_names_samples_counts_and_report(report_run):
    err = (report_run / "run.stderr").read_text()
    assert "cscniche: run complete: what it found" in err
    table = pd.read_csv(report_run / "results/summary.tsv", sep="\t").set_index("sample")
    for s in SAMPLES:
        row = table.loc[s]
        assert row["status"] == "done" and 0 < row["n_cells_kept"] <= row["n_cells_in"]
        assert 0 <= row["n_csc"] <= row["n_malignant"] < row["n_cells_kept"]
        line = f"  {s}: {int(row['n_cells_kept']):,} of {int(row['n_cells_in']):,} cells kept by QC"
        assert line in err and f"{int(row['n_malignant']):,} malignant, {int(row['n_csc']):,} CSC" in err
    assert str((report_run / "results").resolve()) in err and "make report" in err


def _dry_run_jobs(wd, *args) -> dict[str, int]:
    res = run_snakemake(wd, *args, "-n")
    jobs = dict(re.findall(r"^([A-Za-z_]+)\s+(\d+)$", res.stdout, re.M))
    jobs.pop("total", None)
    return {k: int(v) for k, v in jobs.items()}


def test_a_csc_definition_change_reruns_only_the_steps_after_the_csc_call(report_run):
    args = ("--configfile", str(report_run / "config.yaml"))
    assert _dry_run_jobs(report_run, *args) == {}  # the finished run is complete
    jobs = _dry_run_jobs(report_run, *args, "--config", "csc={rule: quantile, quantile: 0.8}")
    # flat, step by step: from score on; demo_p1, one job: that job again (its steps share the parameters)
    assert jobs.get("score") == 1 and jobs.get("sample_steps") == 1, jobs
    assert "export" in jobs and "summary" in jobs, jobs
    upstream = {"demo_data", "load", "qc", "embed", "cnv"}
    assert not upstream & set(jobs), f"a CSC change reruns {sorted(upstream & set(jobs))}: intermediates not kept"
    for s in SAMPLES:
        assert (report_run / f"results/{s}/intermediate/cnv.h5ad").is_file()
