# Helpers: config and sample-sheet loading and validation, input functions. Rules live elsewhere.
import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
from snakemake.io import apply_wildcards
from snakemake.utils import validate

WORKFLOW_DIR = Path(workflow.basedir)


def _load_glue():
    """cscniche._smk loaded by path: config and sample-sheet checks without importing scanpy at parse time."""
    spec = importlib.util.spec_from_file_location("cscniche_smk", WORKFLOW_DIR / "src/cscniche/_smk.py")
    glue = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(glue)
    return glue


_glue = _load_glue()
try:
    _glue.check_config(config, WORKFLOW_DIR / "config/schemas/config.schema.yaml")
except _glue.InputError as exc:
    _glue.fail(exc)
validate(config, schema="../../config/schemas/config.schema.yaml")
# every file the config names (cscniche._smk.CONFIG_FILES) resolved and checked: a missing one stops here, one line
try:
    _glue.check_config_files(config, WORKFLOW_DIR)
except _glue.InputError as exc:
    _glue.fail(exc)


def resolve(path):
    """A config path as given when it exists (relative to the working directory), else the workflow's own copy."""
    return _glue.resolve_path(path, WORKFLOW_DIR)


def _read_sample_sheet(path):
    """Read and validate the sample sheet (cscniche._smk.read_sample_sheet); on error one ERROR line, exit 1."""
    try:
        return _glue.read_sample_sheet(path, WORKFLOW_DIR / "config/schemas/samples.schema.yaml")
    except _glue.InputError as exc:
        _glue.fail(exc)


samples = _read_sample_sheet(config["samples"])


def _load_summary():
    """cscniche.summary loaded by path (pandas and numpy only), for the end-of-run summary."""
    spec = importlib.util.spec_from_file_location("cscniche_summary", WORKFLOW_DIR / "src/cscniche/summary.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def end_of_run(ok):
    """Print per sample what the run found (cells kept, malignant, CSC, warnings) and where the results are."""
    try:
        summary = _load_summary()
        table = summary.run_summary(samples.reset_index(drop=True), "results")
        html = Path("report.html")
        report_hint = (
            f"{html.resolve()} (remake it after a rerun: make report, or snakemake --report report.html)"
            if html.is_file()
            else "make report (or snakemake --report report.html with the same --configfile) writes report.html"
        )
        text = summary.format_summary(table, results=str(Path("results").resolve()), report=report_hint, ok=ok)
        if not ok:
            text += "\nThe step that failed and its log are named in the ERROR lines above."
        print(text, file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - the summary must never turn a finished run into a crash
        print(f"(no end-of-run summary: {type(exc).__name__}: {exc})", file=sys.stderr)


# remote sources (fetched by workflow/rules/fetch.smk): source id -> the fields that say what to fetch (first sample naming it)
SOURCES = {}
for _row in samples.itertuples():
    if _row.path.startswith("resources/downloads") and Path(_row.path).name == "manifest.tsv":
        SOURCES.setdefault(
            _row.path.split("/")[2],
            {
                "sample": _row.sample,
                "url": _row.url,
                "checksum": _row.checksum,
                "geo": _row.geo,
                "geo_files": _row.geo_files,
                "census": _row.census,
            },
        )


def _known_genes():
    """Every gene symbol the configured tables name (for repairing R-mangled names such as HLA.A)."""
    known = set()
    for gmt in config["scoring"]["gene_sets"]:
        for line in Path(gmt).read_text().splitlines():
            known.update(g for g in line.split("\t")[2:] if g)
    for table, col in ((config["checkpoints"]["genes"], "gene"), (config["annotation"]["markers"], "markers")):
        for value in pd.read_csv(table, sep="\t", comment="#", dtype=str)[col].dropna():
            known.update(g.strip() for g in value.split(",") if g.strip())
    return sorted(known)


KNOWN_GENES = _known_genes()


def intermediate(path):
    """An intermediate AnnData (results/<sample>/intermediate/): kept by default so a changed CSC, niche or
    scoring setting reruns only the steps after it; ``keep_intermediates: false`` makes it temp() (deleted once
    every step using it is done; a later config change then reruns from load)."""
    return path if config.get("keep_intermediates", True) else temp(path)


wildcard_constraints:
    sample="(?!cohort/)[A-Za-z0-9_-]+",


def sample_row(wildcards):
    return samples.loc[wildcards.sample]


def sample_input(wildcards):
    return samples.loc[wildcards.sample, "path"]


def sample_pdf_outputs():
    """The per-sample figures' PDF outputs (``<figure>_pdf``) when config ``figures.sample_pdf`` is on."""
    if not config.get("figures", {}).get("sample_pdf", False):
        return {}
    return {f"{name}_pdf": f"results/{{sample}}/figures/{name}.pdf" for name in _glue.SAMPLE_FIGURES}


#: the per-sample figures (cscniche._smk.SAMPLE_FIGURES) and their label in the report
SAMPLE_FIGURE_LABELS = {
    "umap": "UMAP: cell type, compartment, stemness, CSC",
    "scores": "Signature scores by group",
    "csc_markers": "CSC marker detection",
    "immune_neighbours": "Immune neighbours of CSC vs non-CSC",
    "checkpoints": "Checkpoint genes by group",
    "tissue_map": "Tissue map: CSC and immune cells",
    "crosstalk": "Crosstalk on checkpoint axes",
}
assert tuple(SAMPLE_FIGURE_LABELS) == _glue.SAMPLE_FIGURES


def sample_figure_outputs():
    """The per-sample figures as report items (PNG; caption workflow/report/<name>.rst), by name."""
    return {
        name: report(
            f"results/{{sample}}/figures/{name}.png",
            caption=f"../report/{name}.rst",
            category="Per sample",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": label},
        )
        for name, label in SAMPLE_FIGURE_LABELS.items()
    }


def all_outputs():
    per_sample = [
        "cells.tsv.gz",
        "cells_all.tsv.gz",
        "immune_neighbours.tsv",
        "checkpoints.tsv",
        "scored.h5ad",
        "qc.tsv",
        "signature_coverage.tsv",
        "malignant_calls.tsv",
        "stemness_summary.tsv",
        "pseudobulk_scores.tsv",
        *NICHE_TABLES,
    ]
    out = [f"results/{s}/{f}" for s in samples.index for f in per_sample]
    out += [f"results/cohort/{f}" for f in COHORT_TABLES]
    out += [f"results/cohort/{name}.tsv" for name in COHORT_STATISTICS]
    out += ["results/cohort/csc_burden_immune.tsv"]  # rule csc_burden_immune (cohort.smk)
    out += [f"results/patients/{p}/immune_neighbours_knn_shared.tsv" for p in PATIENTS_WITH_SEVERAL_SAMPLES]
    return out


def _patients_with_several_samples():
    """Patients (sample-sheet 'patient') with 2 or more samples: they get one shared, batch-corrected kNN."""
    pat = samples["patient"].astype(str)
    counts = pat[pat != ""].value_counts()
    return sorted(p for p in counts.index[counts >= 2] if re.fullmatch(r"[A-Za-z0-9_-]+", p))


PATIENTS_WITH_SEVERAL_SAMPLES = _patients_with_several_samples()


def patient_samples(wildcards):
    """The final scored AnnData of every sample of a patient."""
    names = samples.index[samples["patient"].astype(str) == wildcards.patient]
    return [f"results/{s}/scored.h5ad" for s in names]


# per-sample niche tables (workflow/rules/niche.smk), also concatenated under results/cohort/
# (nhood_enrichment.tsv only with neighbours.squidpy_enrichment: squidpy's all-label permutation null)
NICHE_TABLES = [
    *(["nhood_enrichment.tsv"] if config["neighbours"]["squidpy_enrichment"] else []),
    "niche_checkpoints.tsv",
    "checkpoint_pseudobulk.tsv",
    "crosstalk.tsv",
    "crosstalk_difference.tsv",
]
# tests across patients (cscniche.cohort), results/cohort/<name>.tsv
COHORT_STATISTICS = [
    "immune_neighbours_patients",
    "immune_neighbours_test",
    "crosstalk_patients",
    "crosstalk_test",
    "checkpoints_pseudobulk_patients",
    "checkpoints_pseudobulk_test",
    "checkpoints_pseudobulk_groups",
]


COHORT_TABLES = [
    "cells.tsv.gz",
    "immune_neighbours.tsv",
    "checkpoints.tsv",
    "qc.tsv",
    "signature_coverage.tsv",
    "malignant_calls.tsv",
    "stemness_summary.tsv",
    "pseudobulk_scores.tsv",
    *NICHE_TABLES,
]
# name of each cohort table's input and output (cohort.smk, cohort_tables), e.g. 'cells.tsv.gz' -> 'cells'
COHORT_KEYS = {t: t.split(".")[0] for t in COHORT_TABLES}


def input_mb(input):
    """Size of a job's input in MB; a directory (a 10x mtx folder) counts with every file in it."""
    mb = input.size_mb  # raises for inputs not made yet, which Snakemake shows as <TBD> in a dry run
    return mb + sum(_glue.input_size_mb(f) for f in input if Path(f).is_dir())


def mem_mb(base, per_input_mb=0.0, *, streamed=None, sketched=False, counted=None, batch_cells=None):
    """Memory request (MB): base + per_input_mb x input size, doubled on each retry (attempt).

    So a job killed for exceeding its memory comes back with twice as much (retries: profiles/slurm).
    ``streamed(input)`` true: the step reads its input in blocks of rows, so only ``base`` counts.
    ``sketched``: the step reads at most scale.max_cells cells of its .h5ad input, so only that share counts.
    ``counted``: only the named input counts (the others are streamed).
    ``batch_cells``: the step holds at most this many cells of its .h5ad input at a time, so only that share
    counts.
    """

    def _mem(wildcards, input, attempt):
        only = getattr(input, counted, None) if counted else None
        mb = Path(only).stat().st_size / 1024**2 if only and Path(only).exists() else input_mb(input)
        if streamed is not None and streamed(input):
            mb = 0.0
        elif sketched:
            mb *= analysed_share(input[0]) if len(input) else 1.0
        elif batch_cells:
            mb *= analysed_share(input[0], batch_cells) if len(input) else 1.0
        return int((base + per_input_mb * mb) * 2 ** (attempt - 1))

    return _mem


def is_h5ad(input):
    """True when the job's first input is an .h5ad file (the loader streams those)."""
    return len(input) > 0 and str(input[0]).lower().endswith(".h5ad")


def analysed_share(path, limit=None):
    """Share of an .h5ad's cells the analysis reads: ``limit`` (default scale.max_cells) / cells, at most 1."""
    import h5py

    limit = limit or config["scale"]["max_cells"]
    if not limit or not Path(path).is_file():
        return 1.0
    with h5py.File(path, "r") as f:
        x = f["X"]
        n = x.attrs["shape"][0] if "shape" in x.attrs else x.shape[0]
    return min(1.0, limit / max(int(n), 1))


def runtime(base, per_input_mb=0.0):
    """Runtime request (minutes): base + per_input_mb x input size, times the attempt number."""

    def _rt(wildcards, input, attempt):
        return int((base + per_input_mb * input_mb(input)) * attempt)

    return _rt


# ---- one job per small sample (sample.smk, sample_steps); these read the rules defined before it ----


def _entries(files, *, flatten=True):
    """A rule's input, output, log or params as (name or None, value) pairs; a named list stays one pair.

    Names and positions come from Namedlist._get_names() (the method Snakemake itself uses to copy names between
    lists): the public items() skips unnamed entries, and most rules' outputs and logs have no name."""
    names = {i: (name, end) for name, (i, end) in files._get_names()}
    out, i = [], 0
    while i < len(files):
        name, end = names.get(i, (None, None))
        if flatten and end is not None:
            out.append((name, [files[j] for j in range(i, end)]))
            i = end
        else:
            out.append((name, files[i]))
            i += 1
    return out


def _step_specs():
    """Each step of SAMPLE_STEPS (sample.smk) as declared by its rule (script, input, output, log, params)."""
    specs = []
    for name in SAMPLE_STEPS:
        r = getattr(rules, name)
        script = WORKFLOW_DIR / "workflow" / "scripts" / f"{name}.py"
        assert script.is_file(), script
        specs.append(
            {
                "rule": name,
                "script": str(script),
                "input": _entries(r.input),
                "output": _entries(r.output),
                "log": _entries(r.log),
                "params": _entries(r.params, flatten=False),
            }
        )
    return specs


def _fill(value, wildcards):
    """A file pattern, an input function or a list of them, for one job's wildcards."""
    if callable(value):
        value = value(wildcards)
    if isinstance(value, (list, tuple)):
        return [_fill(v, wildcards) for v in value]
    return apply_wildcards(str(value), wildcards)


def sample_step_plan(wildcards):
    """Each step's inputs, outputs, log and parameters for this sample (cscniche._smk.run_steps)."""
    plan = []
    for spec in SAMPLE_STEP_SPECS:
        files = {k: [(n, _fill(v, wildcards)) for n, v in spec[k]] for k in ("input", "output", "log")}
        params = [(n, v(wildcards) if callable(v) else v) for n, v in spec["params"]]
        plan.append({"rule": spec["rule"], "script": spec["script"], **files, "params": params})
    return plan


def _sample_steps_io():
    """The job's inputs (every step's, except files an earlier step makes), outputs (every step's, the figures
    as report items) and scratch files: with ``keep_intermediates: false`` the intermediate AnnData files are not
    outputs of the job but scratch, deleted by the job itself when it ends (Snakemake removes a temp() file only
    once the jobs that read it are done, and no other job reads these)."""
    made, inputs, outputs, scratch = set(), [], {}, []
    figures = {**sample_pdf_outputs(), **sample_figure_outputs()}
    for spec in SAMPLE_STEP_SPECS:
        for _, value in spec["input"]:
            for v in value if isinstance(value, list) else [value]:
                if callable(v) or (str(v) not in made and str(v) not in inputs):
                    inputs.append(v if callable(v) else str(v))
        for i, (name, value) in enumerate(spec["output"]):
            made.add(str(value))
            if spec["rule"] == "plot_sample":
                outputs[f"figure_{name}"] = figures[name]
            elif "intermediate" in Path(str(value)).parts and not config.get("keep_intermediates", True):
                scratch.append(str(value))
            else:
                outputs[f"{spec['rule']}_{name or i}"] = str(value)
    return inputs, outputs, scratch


def sample_steps_scratch(wildcards):
    """The scratch files of this sample's one job (see _sample_steps_io), deleted by the job when it ends."""
    return [apply_wildcards(p, wildcards) for p in SAMPLE_STEPS_SCRATCH]


def sample_steps_logs():
    """Each step's own log, named by the step (rule sample_steps writes them all)."""
    return {spec["rule"]: str(spec["log"][0][1]) for spec in SAMPLE_STEP_SPECS}
