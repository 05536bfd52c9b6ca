# Helpers: config and sample-sheet loading and validation, input functions. Rules live elsewhere.
import re
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

validate(config, schema="../../config/schemas/config.schema.yaml")

WORKFLOW_DIR = Path(workflow.basedir)


def resolve(path):
    """A config path as given when it exists (relative to the working directory), else the workflow's own copy.

    So the shipped defaults (config/markers.tsv, ...) work when the pipeline runs in another directory.
    """
    p = Path(path)
    if p.is_absolute() or p.exists() or not (WORKFLOW_DIR / p).exists():
        return str(p)
    return str(WORKFLOW_DIR / p)


config["annotation"]["markers"] = resolve(config["annotation"]["markers"])
config["annotation"]["compartments"] = resolve(config["annotation"]["compartments"])
config["checkpoints"]["genes"] = resolve(config["checkpoints"]["genes"])
config["scoring"]["gene_sets"] = [resolve(p) for p in config["scoring"]["gene_sets"]]


def _read_sample_sheet(path):
    """Read and validate the sample sheet; every error names the sheet and the offending row."""
    if not Path(path).exists():
        raise ValueError(f"sample sheet '{path}' not found (config key 'samples')")
    sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    sheet.columns = [c.strip() for c in sheet.columns]
    for col in ("sample", "path"):
        if col not in sheet.columns:
            raise ValueError(f"sample sheet '{path}' lacks the column '{col}'")
    for col in ("format", "cell_type_key", "patient", "condition"):
        if col not in sheet.columns:
            sheet[col] = ""
    for i, row in sheet.iterrows():
        try:
            validate(row.to_frame().T, schema="../../config/schemas/samples.schema.yaml")
        except Exception as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(f"sample sheet '{path}', row {i + 2} (sample '{row['sample']}'): {first}") from None
    dup = sheet["sample"][sheet["sample"].duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"sample sheet '{path}': duplicated sample IDs {dup}; each sample needs its own ID")
    if sheet.empty:
        raise ValueError(f"sample sheet '{path}' has no samples")
    return sheet.set_index("sample", drop=False)


samples = _read_sample_sheet(config["samples"])


wildcard_constraints:
    sample="(?!cohort/)[A-Za-z0-9_-]+",


def sample_row(wildcards):
    return samples.loc[wildcards.sample]


def sample_input(wildcards):
    return samples.loc[wildcards.sample, "path"]


def all_outputs():
    per_sample = [
        "cells.tsv.gz",
        "immune_neighbours.tsv",
        "checkpoints.tsv",
        "scored.h5ad",
        "qc.tsv",
        "signature_coverage.tsv",
    ]
    out = [f"results/{s}/{f}" for s in samples.index for f in per_sample]
    out += [f"results/cohort/{f}" for f in COHORT_TABLES]
    return out


COHORT_TABLES = [
    "cells.tsv.gz",
    "immune_neighbours.tsv",
    "checkpoints.tsv",
    "qc.tsv",
    "signature_coverage.tsv",
]


def mem_mb(base, per_input_mb=0.0):
    """Memory request: base + per_input_mb x input size, doubled on each retry (attempt)."""

    def _mem(wildcards, input, attempt):
        return int((base + per_input_mb * input.size_mb) * 2 ** (attempt - 1))

    return _mem


def runtime(base, per_input_mb=0.0):
    """Runtime request in minutes, scaled by input size and growing with each retry."""

    def _rt(wildcards, input, attempt):
        return int((base + per_input_mb * input.size_mb) * attempt)

    return _rt
