"""The bad-input catalogue: every case ends in one line naming the sample and the file and saying what to do.

The user meets these through the workflow, so most cases run through Snakemake: one small input generator
(:func:`small`), one ``snakemake --keep-going`` run over a sheet of many bad samples (each must print its own
``ERROR:`` line and leave none of its outputs), plus dry runs for sheet and config errors, which stop the
workflow before anything runs. Library-level checks that tests/test_io.py already makes are not repeated.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import yaml
from conftest import DATA, ROOT, run_snakemake
from scipy import sparse

from cscniche import InputError
from cscniche._smk import check_config, read_sample_sheet
from cscniche.load._readers import check_species, load_sample
from cscniche.niche._checkpoints import COLUMNS as CHECKPOINT_COLUMNS

SHEET_SCHEMA = ROOT / "config/schemas/samples.schema.yaml"
CONFIG_SCHEMA = ROOT / "config/schemas/config.schema.yaml"
IMMUNE = ["T_CD8", "T_CD4", "Treg", "NK", "B", "Macrophage", "MDSC_like"]
FINAL = ["cells.tsv.gz", "immune_neighbours.tsv", "checkpoints.tsv", "scored.h5ad"]


@functools.cache
def _small() -> ad.AnnData:
    from cscniche.demo import DEFAULT_SIZES, make_demo
    from cscniche.stemness._score import read_gmt

    sizes = {k: max(20, v // 6) for k, v in DEFAULT_SIZES.items()}
    return make_demo(seed=3, sizes=sizes, n_background=600, gene_sets=read_gmt(DATA / "genesets/csc_signatures.gmt"))


def small() -> ad.AnnData:
    """A small demo tumour (415 cells x 850 genes, raw counts, author labels, spatial coordinates); a copy."""
    return _small().copy()


def _dense(a: ad.AnnData) -> np.ndarray:
    return a.X.toarray() if sparse.issparse(a.X) else np.asarray(a.X)


def _with_x(a: ad.AnnData, x: np.ndarray) -> ad.AnnData:
    a.X = sparse.csr_matrix(x.astype(np.float32))
    return a


def _lognorm() -> ad.AnnData:
    a = small()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    return a


def _value(v: float) -> ad.AnnData:
    a = small()
    x = _dense(a)
    x[3, 5] = v
    return _with_x(a, x)


def _renamed(names) -> ad.AnnData:
    a = small()
    a.var_names = list(names(a.var_names))
    return a


def _mouse_case(g: str) -> str:
    return g[0] + g[1:].lower() if g[:1].isalpha() else g


def _no_signature_genes() -> ad.AnnData:
    from cscniche.stemness._score import read_gmt

    genes = {g for s in read_gmt(DATA / "genesets/csc_signatures.gmt").values() for g in s}
    a = small()
    return a[:, ~a.var_names.isin(genes)].copy()


def _bad_coords() -> ad.AnnData:
    a = small()
    a.obsm["spatial"][7, 0] = np.nan
    return a


def _no_markers() -> ad.AnnData:
    a = small()
    a.var_names = [f"X{i:04d}" for i in range(a.n_vars)]
    return a


def _without(types) -> ad.AnnData:
    a = small()
    return a[~a.obs["truth_cell_type"].isin(types)].copy()


def _duplicated_genes(a: ad.AnnData) -> ad.AnnData:
    names = list(a.var_names)
    names[names.index("BG00001")] = "CD44"  # a second CD44 column: must be kept, not lost
    a.var_names = names
    return a


def _write(a: ad.AnnData, path: Path) -> None:
    a.write_h5ad(path)


def _truncated(path: Path) -> None:
    small().write_h5ad(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_anndata(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["matrix/data"] = np.arange(10)


def _csv_text(path: Path) -> None:
    a = small()[:30, :20]
    df = pd.DataFrame(_dense(a), index=a.obs_names, columns=a.var_names)
    df.insert(0, "label", "tumour")
    df.to_csv(path)


#: name -> (file name, writer, extra sheet columns, phrases in the ERROR line: the problem and what to do)
ERRORS = {
    "empty": ("empty.h5ad", lambda p: p.write_bytes(b""), {}, ["empty (0 bytes)", "copy or download it again"]),
    "truncated": ("trunc.h5ad", _truncated, {}, ["could not be read as h5ad", "check that the file is complete"]),
    "not_anndata": ("tenx.h5ad", _not_anndata, {}, ["could not be read as h5ad", "of that format"]),
    "wrong_format": ("data.h5ad", None, {"format": "10x_h5"}, ["could not be read as 10x_h5", "of that format"]),
    "csv_text": ("cells.csv", _csv_text, {}, ["could not be read as csv", "check that the file"]),
    "lognorm": ("lognorm.h5ad", _lognorm, {}, ["look log-normalised", "give the unnormalised integer count"]),
    "negative": ("neg.h5ad", lambda: _value(-2.0), {}, ["negative values", "give the unnormalised"]),
    "nan": ("nan.h5ad", lambda: _value(np.nan), {}, ["NaN or infinite", "give the unnormalised"]),
    "ensembl": (
        "ens.h5ad",
        lambda: _renamed(lambda v: [f"ENSG{i:011d}" for i in range(len(v))]),
        {},
        ["Ensembl IDs and no gene-symbol column", "add a column of HGNC symbols"],
    ),
    "mouse": (
        "mouse.h5ad",
        lambda: _renamed(lambda v: [_mouse_case(g) for g in v]),
        {},
        ["look like mouse/rat symbols", "only human HGNC symbols", "map the genes to human orthologues"],
    ),
    "mouse_ensembl": (
        "musg.h5ad",
        lambda: _renamed(lambda v: [f"ENSMUSG{i:011d}" for i in range(len(v))]),
        {},
        ["non-human Ensembl IDs (ENSMUSG", "map the genes to human orthologues"],
    ),
    "no_cell_type_key": (
        "data.h5ad",
        None,
        {"cell_type_key": "celltype"},
        ["cell_type_key 'celltype' is not an obs column", "truth_cell_type", "fix the sample sheet"],
    ),
    "no_spatial_key": (
        "data.h5ad",
        None,
        {"spatial_key": "X_xy"},
        ["spatial_key 'X_xy' is not an obsm key (obsm keys: spatial)", "fix the sample sheet column 'spatial_key'"],
    ),
    "bad_coordinates": ("coords.h5ad", _bad_coords, {}, ["obsm['spatial'] is not a finite", "fix or remove"]),
    "qc_removes_all": (
        "fewgenes.h5ad",
        lambda: small()[:, :150].copy(),
        {},
        ["QC removed every cell", "min_genes=200", "lower the qc thresholds in the config"],
    ),
    "no_marker_genes": (
        "nomarkers.h5ad",
        _no_markers,
        {},
        ["cell typing failed: no marker", "cell_type_key", "fix the marker table"],
    ),
    "no_signature_genes": (
        "nosig.h5ad",
        _no_signature_genes,
        {"cell_type_key": "truth_cell_type"},
        ["CSC_MARKERS 0/4", "min_fraction_present"],
    ),
}
#: samples that must run through, their tables saying what is missing (no_malignant also has a duplicated gene)
RUN_THROUGH = {
    "no_malignant": ("nomal.h5ad", lambda: _duplicated_genes(_without(["Malignant"]))),
    "no_immune": ("noimm.h5ad", lambda: _without(IMMUNE)),
}
#: the step whose outputs a late failure must not leave
FAILING_STEP_OUTPUTS = {"qc_removes_all": ["qc.tsv"], "no_signature_genes": ["signature_coverage.tsv"]}
#: refused after loading (QC, cell typing, scoring); earlier steps' outputs stay so that a fixed rerun resumes
LATE = {"qc_removes_all", "no_marker_genes", "no_signature_genes"}


def _config(wd: Path, **overrides) -> Path:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["samples"] = "samples.tsv"
    cfg["neighbours"]["n_permutations"] = 20
    cfg["embedding"]["umap"] = False
    cfg["qc"]["adaptive"] = False  # fixed thresholds: the case 'qc_removes_all' (adaptive ones never remove all)
    for key, value in overrides.items():
        cfg[key] = value
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    return wd / "config.yaml"


def _sheet(wd: Path, rows: list[dict]) -> None:
    cols = ["sample", "path", "format", "cell_type_key", "spatial_key"]
    pd.DataFrame(rows).reindex(columns=cols).fillna("").to_csv(wd / "samples.tsv", sep="\t", index=False)


@pytest.fixture(scope="module")
def catalogue_run(tmp_path_factory):
    """One snakemake --keep-going run over every bad sample and the run-through samples."""
    wd = tmp_path_factory.mktemp("catalogue")
    (wd / "data").mkdir()
    _write(small(), wd / "data/data.h5ad")
    rows = []
    for name, (fname, make, cols, _) in ERRORS.items():
        path = wd / "data" / fname
        if make is not None and not path.exists():
            if make.__code__.co_argcount == 1:
                make(path)
            else:
                _write(make(), path)
        rows.append({"sample": name, "path": f"data/{fname}", **cols})
    for name, (fname, make) in RUN_THROUGH.items():
        _write(make(), wd / "data" / fname)
        rows.append({"sample": name, "path": f"data/{fname}", "cell_type_key": "truth_cell_type"})
    _sheet(wd, rows)
    targets = [f"results/{row['sample']}/{f}" for row in rows for f in FINAL]  # no figures, no cohort tables
    res = run_snakemake(wd, "--configfile", str(_config(wd)), "--cores", "2", "--keep-going", *targets, check=False)
    return wd, res


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_sample_ends_in_one_line_naming_sample_file_and_fix(catalogue_run, name):
    wd, res = catalogue_run
    assert res.returncode != 0
    fname, _, _, phrases = ERRORS[name]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"ERROR: sample '{name}',")]
    assert len(lines) == 1, (name, lines, res.stderr[-3000:])
    line = lines[0]
    assert line.startswith(f"ERROR: sample '{name}', file 'data/{fname}': "), line
    for phrase in phrases:
        assert phrase in line, (phrase, line)
    for f in FINAL + FAILING_STEP_OUTPUTS.get(name, []):
        assert not (wd / "results" / name / f).exists(), (name, f)
    if name not in LATE:  # refused on loading: nothing of the sample is left
        assert not [p for p in (wd / "results").glob(f"{name}/**/*") if p.is_file()], name


@pytest.mark.slow
def test_only_the_catalogued_errors_and_no_unexpected_ones(catalogue_run):
    _, res = catalogue_run
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR: ")]
    named = {re.match(r"ERROR: sample '([^']+)'", ln).group(1) for ln in errors}
    assert named == set(ERRORS), errors
    assert not any(re.search(r"step '\w+': unexpected", ln) for ln in errors), errors
    assert "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("name", "note"), [("no_malignant", "no malignant cells"), ("no_immune", "no immune cells")])
def test_sample_without_malignant_or_immune_cells_writes_tables_saying_so(catalogue_run, name, note):
    wd, _ = catalogue_run
    for f in FINAL + ["qc.tsv", "signature_coverage.tsv"]:
        assert (wd / "results" / name / f).stat().st_size > 0, f
    nb = pd.read_csv(wd / "results" / name / "immune_neighbours.tsv", sep="\t")
    assert set(nb["neighbourhood"]) == {"knn", "spatial"}
    # knn rows carry the informational "transcriptional neighbours, not spatial" before the reason
    assert (nb["note"].str.split("; ").str[-1] == note).all(), nb
    cells = pd.read_csv(wd / "results" / name / "cells.tsv.gz", sep="\t")
    assert not cells["csc"].any() if name == "no_malignant" else cells["csc"].any()
    cp = pd.read_csv(wd / "results" / name / "checkpoints.tsv", sep="\t", keep_default_na=False)
    assert len(cp) > 0 and (cp["sample"] == name).all()
    assert list(cp.columns) == CHECKPOINT_COLUMNS  # the same columns with or without malignant cells
    expected = cp["note"] == ("no malignant cells" if name == "no_malignant" else "")
    low = cp["note"].str.startswith("not tested: expressed in fewer than")  # the minimum-expression rule
    assert (expected | low).all(), cp["note"].unique()


@pytest.mark.slow
def test_duplicated_gene_names_are_kept_unique_and_logged(catalogue_run):
    wd, _ = catalogue_run
    log = (wd / "logs/no_malignant/load.log").read_text()
    assert "1 duplicated gene names (1 symbols, e.g. CD44) kept and made unique with -1, -2 suffixes" in log
    a = ad.read_h5ad(wd / "results/no_malignant/scored.h5ad", backed="r")
    assert {"CD44", "CD44-1"} <= set(a.var_names) and a.n_vars == small().n_vars  # no column lost
    assert list(a.uns["cscniche"]["load"]["duplicated_genes"]) == ["CD44"]


# --- errors of the sample sheet and the config: the workflow stops before running anything -------------------


def _dry(tmp_path: Path, sheet: str, **config) -> subprocess.CompletedProcess:
    (tmp_path / "samples.tsv").write_text(sheet)
    cfg = _config(tmp_path, **config)
    return run_snakemake(tmp_path, "--configfile", str(cfg), "-n", check=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sheet", "config", "expected"),
    [
        (
            "sample\tpath\n../up\tresources/demo/demo_p1.h5ad\n",
            {},
            "ERROR: sample sheet 'samples.tsv', line 2 (sample '../up'), column 'sample': '../up' is not allowed",
        ),
        (
            "sample\tpath\nok\tresources/demo/demo_p1.h5ad\na/b\tresources/demo/demo_p1.h5ad\n",
            {},
            "ERROR: sample sheet 'samples.tsv', line 3 (sample 'a/b'), column 'sample': 'a/b' is not allowed",
        ),
        (
            "sample\tpath\nok\tresources/demo/demo_p1.h5ad\n",
            {"qc": {"min_genes": "two hundred"}},
            "ERROR: config key 'qc.min_genes': 'two hundred' is not of type 'integer' (minimum detected genes per "
            "cell; default 200); fix it in the config file or --config",
        ),
    ],
)
def test_sheet_and_config_errors_stop_the_workflow_with_one_line(tmp_path, sheet, config, expected):
    res = _dry(tmp_path, sheet, **config)
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR: ")]
    assert len(errors) == 1 and errors[0].startswith(expected), res.stderr[-2000:]
    assert "Traceback" not in res.stderr and not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("sheet", "phrase"),
    [
        ("sample\tpath\n..\tx.h5ad\n", "line 2 (sample '..'), column 'sample': '..' is not allowed (sample ID"),
        ("sample\tpath\ncohort\tx.h5ad\n", "column 'sample': 'cohort' is not allowed"),
        ("sample\tpath\n\tx.h5ad\n", "column 'sample': '' is not allowed"),
        (
            "# comment\nsample\tpath\tspatial_key\n\na\tx.h5ad\t\nb\tx.h5ad\tobsm/xy\n",
            "line 5 (sample 'b'), column 'spatial_key': 'obsm/xy' is not allowed",
        ),
        ("sample\tpath\tformat\na\tx.h5ad\trds\n", "column 'format': 'rds' is not allowed (input format: h5ad"),
        ("sample\tpath\tcell_type_key\na\tx.h5ad\ta/b\n", "column 'cell_type_key': 'a/b' is not allowed"),
        ("name\tpath\na\tx.h5ad\n", "lacks the column 'sample' (columns found: name, path)"),
        ("sample,path\na,x.h5ad\n", "is not tab-separated (header 'sample,path'); separate the columns with tabs"),
        ("sample\tpath\n", "has no samples"),
        ("sample\tpath\na\tx.h5ad\nb\tx.h5ad\na\tx.h5ad\n", "duplicated sample IDs ['a'] ('a' on lines 2 and 4"),
        ("sample\tpath\na\tmissing.h5ad\n", "line 2 (sample 'a'), column 'path': 'missing.h5ad' does not exist"),
        (
            "sample\tpath\tcell_type_kye\na\tx.h5ad\tcelltype\n",
            "unknown column 'cell_type_kye'; did you mean 'cell_type_key'? known columns: sample, path,",
        ),
        ("sample\tpath\tdonor_age\na\tx.h5ad\t61\n", "unknown column 'donor_age'; known columns"),
        ("sample\tpath\tdonor_age\na\tx.h5ad\t61\n", "needs the prefix 'meta_' (e.g. 'meta_donor_age')"),
        (
            "sample\tpath\na\ts3://bucket/a.h5ad\n",
            "line 2 (sample 'a'), column 'path': 's3://bucket/a.h5ad': only http://, https:// and ftp:// URLs",
        ),
        (
            "sample\tpath\tgeo\na\thttps://x.org/a.h5ad\tGSE1\n",
            "column 'path': 'https://x.org/a.h5ad': the sample also names a remote source",
        ),
    ],
)
def test_sample_sheet_errors_name_line_sample_and_column(tmp_path, sheet, phrase):
    (tmp_path / "x.h5ad").write_bytes(b"x")
    (tmp_path / "s.tsv").write_text(sheet)
    with pytest.raises(InputError) as e:
        read_sample_sheet(tmp_path / "s.tsv", SHEET_SCHEMA, workdir=tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"sample sheet '{tmp_path / 's.tsv'}'") and phrase in msg and "\n" not in msg, msg


def test_user_columns_with_the_meta_prefix_are_carried_and_a_url_in_path_is_fetched(tmp_path):
    (tmp_path / "x.h5ad").write_bytes(b"x")
    (tmp_path / "s.tsv").write_text(
        "sample\tpath\tmeta_donor_age\na\tx.h5ad\t61\nb\thttps://example.org/data/b.h5ad\t70\n"
    )
    sheet = read_sample_sheet(tmp_path / "s.tsv", SHEET_SCHEMA, workdir=tmp_path)
    assert sheet["meta_donor_age"].tolist() == ["61", "70"]
    # the URL moves to 'url' (the fetch rule downloads it, cached and verified); 'path' names the fetched manifest
    assert sheet.loc["b", "url"] == "https://example.org/data/b.h5ad" and sheet.loc["b", "member"] == ""
    assert sheet.loc["b", "path"].startswith("resources/downloads/src-") and sheet.loc["b", "path"].endswith(
        "/manifest.tsv"
    )


@pytest.mark.slow
def test_url_in_path_dry_runs_the_fetch_rule_not_a_missing_input(tmp_path):
    res = _dry(tmp_path, "sample\tpath\nweb\thttps://example.org/data/web.h5ad\n")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "MissingInputException" not in res.stderr + res.stdout
    assert re.search(r"^fetch\s+1$", res.stdout, re.M), res.stdout[-3000:]  # the job table counts one download


def test_sample_sheet_defaults_and_backwards_compatibility(tmp_path):
    (tmp_path / "x.h5ad").write_bytes(b"x")
    (tmp_path / "s.tsv").write_text("sample\tpath\n a \t x.h5ad \nb\tresources/demo/b.h5ad\n")
    sheet = read_sample_sheet(tmp_path / "s.tsv", SHEET_SCHEMA, workdir=tmp_path)
    assert list(sheet.index) == ["a", "b"] and sheet.loc["a", "path"] == "x.h5ad"
    assert (sheet[["format", "cell_type_key", "spatial_key", "patient", "condition"]] == "").all().all()
    with pytest.raises(InputError, match="not found; set the config key 'samples'"):
        read_sample_sheet(tmp_path / "nope.tsv", SHEET_SCHEMA)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"samples": "s.tsv", "seed": 1.5}, "config key 'seed': 1.5 is not of type 'integer'"),
        ({"samples": "s.tsv", "qc": {"max_pct_mt": 150}}, "config key 'qc.max_pct_mt': 150 is greater than"),
        (
            {"samples": "s.tsv", "csc": {"quantile": "high"}},
            "config key 'csc.quantile': 'high' is not of type 'number'",
        ),
        ({"samples": "s.tsv", "qc": {"min_gene": 3}}, "unknown config key 'qc.min_gene'; known keys under 'qc':"),
        ({"samples": "s.tsv", "sead": 3}, "unknown config key 'sead'; known keys: annotation,"),
        ({"samples": 3}, "config key 'samples': 3 is not of type 'string' (path to the tab-separated sample sheet"),
        ({"samples": "s.tsv", "scoring": {"gene_sets": []}}, "config key 'scoring.gene_sets': [] should be non-empty"),
        ({"qc": {}}, "config: 'samples' is a required property"),
    ],
)
def test_config_errors_name_the_key(config, message):
    with pytest.raises(InputError) as e:
        check_config(config, CONFIG_SCHEMA)
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)
    assert str(e.value).endswith("fix it in the config file or --config")


def test_shipped_config_is_valid():
    check_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()), CONFIG_SCHEMA)


def _shipped(section: str, **values) -> dict:
    """A section of the shipped config with some values replaced."""
    return {**yaml.safe_load((ROOT / "config/config.yaml").read_text())[section], **values}


#: every config key that names a file: (section, overrides, the path named in the error)
CONFIG_FILE_CASES = {
    "annotation.markers": ("annotation", {"markers": "config/nope.tsv"}, "config/nope.tsv"),
    "annotation.compartments": ("annotation", {"compartments": "nope/compartments.tsv"}, "nope/compartments.tsv"),
    "scoring.gene_sets": (
        "scoring",
        {"gene_sets": ["cscniche:genesets/csc_signatures.gmt", "config/genesets/nope.gmt"]},
        "config/genesets/nope.gmt",
    ),
    "scoring.mrnasi_weights": ("scoring", {"mrnasi_weights": "weights.tsv"}, "weights.tsv"),
    "checkpoints.genes": ("checkpoints", {"genes": "config/nope_checkpoints.tsv"}, "config/nope_checkpoints.tsv"),
    "genes.map": ("genes", {"map": "ens2sym.tsv"}, "ens2sym.tsv"),
    "cnv.gene_positions": ("cnv", {"gene_positions": "genes.gtf"}, "genes.gtf"),
}


@pytest.mark.parametrize("key", list(CONFIG_FILE_CASES))
def test_config_file_that_does_not_exist_is_one_line_naming_key_and_path(tmp_path, monkeypatch, key):
    from cscniche._smk import CONFIG_FILES, check_config_files

    assert set(CONFIG_FILE_CASES) == set(CONFIG_FILES)
    monkeypatch.chdir(tmp_path)
    section, values, path = CONFIG_FILE_CASES[key]
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg[section].update(values)
    with pytest.raises(InputError) as e:
        check_config_files(cfg, ROOT)
    msg = str(e.value)
    item = " (item 2)" if key == "scoring.gene_sets" else ""
    assert msg.startswith(f"config key '{key}'{item}: file '{path}' does not exist (looked in the working directory")
    assert msg.endswith("fix the path in the config file or --config") and "\n" not in msg


def test_config_files_resolved_to_the_workflow_copy_and_optional_ones_skipped(tmp_path, monkeypatch):
    from cscniche._smk import check_config_files

    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    (tmp_path / "markers.tsv").write_text("x")  # a local file wins over the workflow's copy
    cfg["annotation"]["markers"] = "markers.tsv"
    cfg["cnv"].update(enabled=False, gene_positions="unused.gtf")  # not needed without CNV
    check_config_files(cfg, ROOT)
    assert cfg["annotation"]["markers"] == "markers.tsv"
    assert cfg["annotation"]["compartments"] == str(DATA / "compartments_anchored.tsv")
    assert cfg["scoring"]["gene_sets"] == [str(DATA / "genesets/csc_tumour_intrinsic.gmt")]
    assert cfg["genes"]["map"] == "" and cfg["scoring"]["mrnasi_weights"] == ""  # empty: not used
    cfg["annotation"]["markers"] = str(tmp_path)
    with pytest.raises(InputError, match="config key 'annotation.markers': file '.*' is a folder, not a file"):
        check_config_files(cfg, ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["annotation.markers", "scoring.gene_sets"])
def test_missing_config_file_stops_the_workflow_before_any_job(tmp_path, key):
    """A real run (not a dry run): one ERROR line naming the key and the path, no traceback, nothing written."""
    (tmp_path / "samples.tsv").write_text("sample\tpath\nok\tresources/demo/demo_p1.h5ad\n")
    section, values, path = CONFIG_FILE_CASES[key]
    cfg = _config(tmp_path, **{section: _shipped(section, **values)})
    res = run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", check=False)
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR: ")]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: config key '{key}'"), res.stderr[-2000:]
    assert f"file '{path}' does not exist" in errors[0]
    assert "Traceback" not in res.stderr and "MissingInputException" not in res.stderr
    assert not [p for d in ("results", "resources", "logs") for p in (tmp_path / d).glob("**/*")]


# --- library-level behaviour behind the catalogue --------------------------------------------------------------


def test_species_check_refuses_mouse_and_keeps_human():
    human = list(small().var_names)
    check_species(human)
    check_species([f"ENSG{i:011d}" for i in range(50)])
    check_species(["C1orf112", "LINC00115", "RP11-34P13.7", "MT-CO1"] + human)  # human names with lower case
    with pytest.raises(ValueError, match="mouse/rat symbols .* cased like Epcam"):
        check_species([_mouse_case(g) for g in human])
    with pytest.raises(ValueError, match=r"non-human Ensembl IDs \(ENSRNOG"):
        check_species([f"ENSRNOG{i:011d}" for i in range(50)])


def test_spatial_key_copied_to_spatial_and_optional(tmp_path):
    a = small()
    a.obsm["X_xy"] = a.obsm.pop("spatial") * 2
    p = tmp_path / "a.h5ad"
    a.write_h5ad(p)
    out = load_sample(p, sample="s", spatial_key="X_xy")
    np.testing.assert_array_equal(out.obsm["spatial"], a.obsm["X_xy"])
    assert out.uns["cscniche"]["load"]["spatial_from"] == "X_xy"
    assert "spatial" not in load_sample(p, sample="s").obsm  # not named, no obsm['spatial']: no coordinates
    with pytest.raises(InputError, match=r"sample 's', file '.*a.h5ad': spatial_key 'spatial' is not an obsm key"):
        load_sample(p, sample="s", spatial_key="spatial")


def test_unexpected_error_in_a_step_is_one_line_with_the_log(tmp_path, capsys):
    from types import SimpleNamespace

    from cscniche._smk import step

    log = tmp_path / "x.log"
    smk = SimpleNamespace(log=[str(log)], wildcards={"sample": "s1"}, rule="score", config={"samples": "none.tsv"})
    with pytest.raises(SystemExit) as e, step(smk):
        raise KeyError("compartment")
    assert e.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        f"ERROR: sample 's1', step 'score': unexpected KeyError: 'compartment'; the traceback is in {log}; "
        "this is a bug or an unforeseen input: please report it with that log"
    )
    assert "Traceback" in log.read_text()


def test_input_error_without_file_gets_the_sample_input_file(tmp_path, capsys):
    from types import SimpleNamespace

    from cscniche._smk import step

    (tmp_path / "s.tsv").write_text("sample\tpath\ns1\tdata/s1.h5ad\n")
    smk = SimpleNamespace(log=[], wildcards={"sample": "s1"}, rule="qc", config={"samples": str(tmp_path / "s.tsv")})
    with pytest.raises(SystemExit), step(smk):
        raise InputError("QC removed every cell; lower the qc thresholds", sample="s1")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "ERROR: sample 's1', file 'data/s1.h5ad': QC removed every cell; lower the qc thresholds"
    )


# --- safety: no shell strings, outputs only under the working directory -------------------------------------------


def _rule_files() -> list[Path]:
    return [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]


def test_no_rule_runs_a_shell_command():
    for f in _rule_files():
        text = f.read_text()
        assert not re.search(r"^\s*(shell|run):", text, re.M), f"{f.name} has a shell:/run: directive; use script:"
        assert "shell(" not in text and "os.system" not in text and "subprocess" not in text, f.name
    for f in (ROOT / "workflow/scripts").glob("*.py"):
        text = f.read_text()
        assert "subprocess" not in text and "os.system" not in text and "shell=True" not in text, f.name
    for f in (ROOT / "src/cscniche").glob("*.py"):
        assert "shell=True" not in f.read_text() and "os.system" not in f.read_text(), f.name


def test_every_output_and_log_stays_under_the_working_directory():
    """Every output:/log:/benchmark: path of every rule is relative and under results/, logs/ or resources/."""
    for f in _rule_files():
        block = None
        for line in f.read_text().splitlines():
            m = re.match(r"^\s{4}(\w+):", line)
            if m:
                block = m.group(1)
                continue
            if block in ("output", "log", "benchmark") and not re.match(
                r"^\s*(caption|category|subcategory|labels)=", line
            ):
                for path in re.findall(r"\"([^\"]+)\"", line):
                    assert path.startswith(("results/", "logs/", "resources/", "reports/")), (f.name, path)
                    assert ".." not in Path(path).parts, (f.name, path)
    # the sample-ID rules keep {sample} a single safe path component
    pattern = re.search(r'sample="([^"]+)"', (ROOT / "workflow/rules/common.smk").read_text()).group(1)
    for bad in ("..", "../x", "a/b", "/etc", "a b", ".hidden", "cohort/x"):
        assert not re.fullmatch(pattern, bad), bad
    schema = yaml.safe_load(SHEET_SCHEMA.read_text())["properties"]["sample"]["pattern"]
    for bad in ("..", "../x", "a/b", "/etc", ".", "a.b"):
        assert not re.fullmatch(schema, bad), bad


def test_nested_config_values_given_on_the_command_line_are_typed_by_the_schema():
    """`--config csc='{rule: quantile, quantile: 0.8}'` reaches the workflow with strings (Snakemake's parser)."""
    schema = ROOT / "config/schemas/config.schema.yaml"
    cfg = {"samples": "s.tsv", "csc": {"rule": "quantile", "quantile": "0.8", "n_random_sets": "100"},
           "qc": {"adaptive": "false", "n_mads_high": "null"}}  # fmt: skip
    check_config(cfg, schema)
    assert cfg["csc"] == {"rule": "quantile", "quantile": 0.8, "n_random_sets": 100}
    assert cfg["qc"] == {"adaptive": False, "n_mads_high": None}
    with pytest.raises(InputError, match=r"config key 'qc.min_genes': 'two hundred' is not of type 'integer'"):
        check_config({"samples": "s.tsv", "qc": {"min_genes": "two hundred"}}, schema)
    with pytest.raises(InputError, match=r"config key 'csc.n_random_sets': '1.5' is not of type 'integer'"):
        check_config({"samples": "s.tsv", "csc": {"n_random_sets": "1.5"}}, schema)
