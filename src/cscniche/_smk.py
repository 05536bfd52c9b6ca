"""Glue for the Snakemake workflow: config and sample-sheet validation, and the thin scripts' ``step``.

Every user error ends in one line ``ERROR: <message>`` on stderr:

- the config and the sample sheet are checked when the workflow is parsed (:func:`check_config`,
  :func:`read_sample_sheet`, :func:`fail`); the message names the config key, or the sheet, line,
  sample and column;
- a step that meets bad input raises :class:`InputError`; :func:`step` prints it with the sample and
  its input file and exits 1, so Snakemake deletes that step's outputs (no partial output).

This module is loaded by file path from ``workflow/rules/common.smk`` (so parsing the workflow does
not import scanpy); it imports only the standard library, ``_errors`` and, inside functions, pandas,
yaml and jsonschema.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import traceback
import warnings
from pathlib import Path

try:
    from ._errors import InputError
except ImportError:  # loaded by path from the Snakefile, outside the package
    import importlib.util as _ilu

    _spec = _ilu.spec_from_file_location("cscniche_errors", Path(__file__).with_name("_errors.py"))
    _mod = _ilu.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    InputError = _mod.InputError

#: config values naming a table shipped in the package's data/ folder (:mod:`cscniche._resources`)
PREFIX = "cscniche:"


def bundled(name: str) -> Path:
    """The shipped table ``name``: the package's ``data/`` folder beside this file (also when loaded by path)."""
    path = Path(__file__).with_name("data") / name
    if not path.is_file():
        raise FileNotFoundError(name)
    return path


#: sample-sheet paths that the workflow itself produces (the demo) or fetches (scheme://...)
GENERATED = re.compile(r"^(resources/|[A-Za-z][A-Za-z0-9+.-]*://)")


#: a value that looks like a URL (any scheme), and the schemes the fetch rule downloads
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
FETCHED = re.compile(r"^(https?|ftp)://\S+$")

#: sample-sheet columns of the user's own (carried along into results/summary.tsv, used by no rule) start with this
META_PREFIX = "meta_"
#: heavy packages whose import a step pays; :func:`step` logs which ones the step loaded (benchmarks/bench_cohort.py
#: then times importing them: the fixed cost of the step, top-level and deferred imports alike)
HEAVY_MODULES = (
    "anndata", "infercnvpy", "liana", "matplotlib", "numba", "pynndescent", "scanpy", "scipy.stats", "sklearn",
    "squidpy", "umap",
)  # fmt: skip
#: the per-sample figures, in report order: rule plot_sample's outputs (PNG; ``<name>_pdf`` with
#: figures.sample_pdf) and :func:`cscniche.pl.sample_figures`' keys
SAMPLE_FIGURES = ("umap", "scores", "csc_markers", "immune_neighbours", "checkpoints", "tissue_map", "crosstalk")

#: sample-sheet columns that name a remote source
REMOTE_COLUMNS = ("url", "geo", "census")


def source_id(row) -> str:
    """A short stable ID of a sample's remote source (its URLs, checksums, GEO accession and patterns, census query)."""
    import hashlib

    key = "|".join(str(row.get(c, "")) for c in ("url", "checksum", "geo", "geo_files", "census"))
    return "src-" + hashlib.sha1(key.encode()).hexdigest()[:12]


def fail(exc: BaseException | str) -> None:
    """Print ``ERROR: <one line>`` to stderr and stop (exit status 1) without a traceback."""
    print(f"ERROR: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def _load_yaml(path: str | Path) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def _hint(schema: dict) -> str:
    parts = []
    if schema.get("description"):
        parts.append(str(schema["description"]))
    if "default" in schema and not isinstance(schema["default"], dict):
        parts.append(f"default {schema['default']!r}")
    return f" ({'; '.join(parts)})" if parts else ""


_YAML_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def coerce_strings(config: dict, schema: dict) -> None:
    """Typed values given as strings (in place): ``--config csc='{quantile: 0.8}'`` reaches the workflow as
    ``{'quantile': '0.8'}`` (Snakemake reads nested values as strings); where the schema wants a number, integer,
    boolean or null and the string reads as one in YAML, it becomes that value. Anything else is left for the
    schema check to report.
    """
    import yaml

    props = schema.get("properties", {})
    for key, value in list(config.items()) if isinstance(config, dict) else []:
        sub = props.get(key)
        if not isinstance(sub, dict):
            continue
        if isinstance(value, dict):
            coerce_strings(value, sub)
            continue
        types = sub.get("type", [])
        types = [types] if isinstance(types, str) else list(types)
        if isinstance(value, str) and types and "string" not in types:
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
            wanted = tuple(t for name in types if name in _YAML_TYPES for t in
                           (_YAML_TYPES[name] if isinstance(_YAML_TYPES[name], tuple) else (_YAML_TYPES[name],)))  # fmt: skip
            if wanted and isinstance(parsed, wanted) and not (isinstance(parsed, bool) and bool not in wanted):
                config[key] = parsed


def check_config(config: dict, schema_path: str | Path) -> None:
    """Validate the config against its JSON schema; raise one :class:`InputError` naming the key.

    Example message: ``config key 'qc.min_genes': 'abc' is not of type 'integer' (minimum detected
    genes per cell; default 200); fix it in the config file or --config``.
    """
    import jsonschema

    schema = _load_yaml(schema_path)
    coerce_strings(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    err = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if err is None:
        return
    key = ".".join(map(str, err.absolute_path))
    fix = "fix it in the config file or --config"
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        names = ", ".join(f"'{'.'.join([key, e]) if key else e}'" for e in extra)
        raise InputError(f"unknown config key {names}; known keys{' under ' + repr(key) if key else ''}: "
                         f"{', '.join(known)}; {fix}")  # fmt: skip
    if err.validator == "required":
        raise InputError(f"config: {err.message}{' under ' + repr(key) if key else ''}; {fix}")
    raise InputError(f"config key '{key}': {err.message}{_hint(err.schema)}; {fix}")


#: config keys that name an input file (``scoring.gene_sets``: a list of files); an empty value leaves an
#: optional file unset (``genes.map``, ``scoring.mrnasi_weights``, ``cnv.gene_positions``)
CONFIG_FILES = (
    "annotation.markers",
    "annotation.compartments",
    "scoring.gene_sets",
    "scoring.mrnasi_weights",
    "checkpoints.genes",
    "genes.map",
    "cnv.gene_positions",
)


def resolve_path(path: str, workflow_dir: str | Path) -> str:
    """A config path as given when it exists (relative to the working directory), else the workflow's own copy.

    ``cscniche:<name>`` is a table shipped with the library (:mod:`cscniche._resources`), e.g. the default
    ``cscniche:markers.tsv``; its absolute path is returned so Snakemake can track it as an input.
    """
    if str(path).startswith(PREFIX):
        try:
            return str(bundled(str(path)[len(PREFIX) :]))
        except FileNotFoundError:
            return str(path)  # reported by check_config_files as a missing file
    p = Path(path)
    if p.is_absolute() or p.exists() or not (Path(workflow_dir) / p).exists():
        return str(p)
    return str(Path(workflow_dir) / p)


def check_config_files(config: dict, workflow_dir: str | Path, *, keys: tuple[str, ...] = CONFIG_FILES) -> None:
    """Resolve the files the config names (in place) and raise one :class:`InputError` for a missing one.

    Paths are resolved by :func:`resolve_path`; the error names the config key and the path as given.
    ``cnv.gene_positions`` is only checked when ``cnv.enabled``. Example message: ``config key
    'annotation.markers': file 'config/nope.tsv' does not exist (looked in the working directory /w and the
    workflow directory /wf); fix the path in the config file or --config``.
    """
    for key in keys:
        section, name = key.split(".")
        value = (config.get(section) or {}).get(name)
        if value is None:
            continue
        given = value if isinstance(value, list) else [value]
        paths = [resolve_path(p, workflow_dir) if p else p for p in given]
        config[section][name] = paths if isinstance(value, list) else paths[0]
        if key == "cnv.gene_positions" and not config[section].get("enabled", True):
            continue
        for i, (g, p) in enumerate(zip(given, paths, strict=True)):
            if not p or Path(p).is_file():
                continue
            where = f"config key '{key}'" + (f" (item {i + 1})" if isinstance(value, list) else "")
            what = "is a folder, not a file" if Path(p).is_dir() else "does not exist"
            raise InputError(
                f"{where}: file '{g}' {what} (looked in the working directory {Path.cwd()} and the workflow "
                f"directory {Path(workflow_dir).resolve()}); fix the path in the config file or --config"
            )


def _data_lines(path: Path) -> list[int]:
    """Line numbers (1-based) of the header and data rows, as pandas reads them (no blank/comment lines)."""
    lines = path.read_text().splitlines()
    return [i + 1 for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]


def read_sample_sheet(path: str | Path, schema_path: str | Path, *, workdir: str | Path = "."):
    """Read and validate the tab-separated sample sheet; return it indexed by sample ID.

    Optional columns absent from the sheet get their schema default. Errors are one-line
    :class:`InputError` naming the sheet, the line, the sample and the column: missing required
    column, a value against the schema (e.g. a sample ID with '/' or '..'), duplicated IDs, an
    input path that does not exist (except paths the workflow makes itself, ``resources/...``).
    """
    import jsonschema
    import pandas as pd

    path = Path(path)
    where = f"sample sheet '{path}'"
    if not path.is_file():
        raise InputError(f"{where} not found; set the config key 'samples' to a tab-separated sample sheet")
    schema = _load_yaml(schema_path)
    props = schema["properties"]
    try:
        sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parser failure becomes one line
        raise InputError(f"{where} could not be read as a tab-separated table ({exc}); fix its format") from None
    sheet.columns = [str(c).strip() for c in sheet.columns]
    missing = [c for c in schema.get("required", []) if c not in sheet.columns]
    if missing and len(sheet.columns) == 1 and re.search(r"[,; ]", sheet.columns[0]):
        raise InputError(f"{where} is not tab-separated (header '{sheet.columns[0]}'); separate the columns with tabs")
    if missing:
        raise InputError(
            f"{where} lacks the column '{missing[0]}' (columns found: {', '.join(sheet.columns)}); the sheet is "
            f"tab-separated with a header line naming at least {', '.join(schema['required'])}"
        )
    unknown = [c for c in sheet.columns if c not in props and not c.startswith(META_PREFIX)]
    if unknown:
        import difflib

        col = unknown[0]
        close = difflib.get_close_matches(col, list(props), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise InputError(
            f"{where}: unknown column '{col}'; {hint}known columns: {', '.join(props)}; a column of your own that "
            f"the workflow should carry along needs the prefix '{META_PREFIX}' (e.g. '{META_PREFIX}{col}')"
        )
    for col, spec in props.items():
        if col not in sheet.columns:
            sheet[col] = spec.get("default", "")
    sheet = sheet.map(lambda v: v.strip() if isinstance(v, str) else v)
    if sheet.empty:
        raise InputError(f"{where} has no samples; add one line per sample")
    lines = _data_lines(path)[1:]
    # a URL in 'path': http(s)/ftp is fetched like the column 'url' (same cache and checks); other schemes stop here
    for i in range(len(sheet)):
        value = sheet["path"].iloc[i]
        if not SCHEME.match(value):
            continue
        row = sheet.iloc[i]
        line = lines[i] if i < len(lines) else i + 2
        if not FETCHED.match(value) or any(row.get(c, "") for c in REMOTE_COLUMNS):
            why = (
                "the sample also names a remote source (url, geo or census); put the file to load among the fetched "
                "files in 'path' (a name, not a URL)"
                if FETCHED.match(value)
                else "only http://, https:// and ftp:// URLs are fetched; download the file and give its local path"
            )
            raise InputError(f"{where}, line {line} (sample '{row['sample']}'), column 'path': '{value}': {why}")
        sheet.iloc[i, sheet.columns.get_loc("url")] = value
        sheet.iloc[i, sheet.columns.get_loc("path")] = ""
    # remote sources: the data are fetched to resources/downloads/<source id>/ (shared by the samples that
    # name the same source); 'path' then names the file or folder to load among the fetched files
    sheet["member"] = ""
    for i in range(len(sheet)):
        row = sheet.iloc[i]
        if any(row.get(c, "") for c in REMOTE_COLUMNS):
            sheet.iloc[i, sheet.columns.get_loc("member")] = row["path"]
            sheet.iloc[i, sheet.columns.get_loc("path")] = f"resources/downloads/{source_id(row)}/manifest.tsv"
        elif not row["path"]:
            line = lines[i] if i < len(lines) else i + 2
            raise InputError(
                f"{where}, line {line} (sample '{row['sample']}'), column 'path': empty; give a file or folder, "
                "or a remote source in the column url, geo or census"
            )
    validator = jsonschema.Draft202012Validator(schema)
    at = []
    for i, row in enumerate(sheet[list(props)].to_dict("records")):
        line = lines[i] if i < len(lines) else i + 2
        at.append(f"{where}, line {line} (sample '{row['sample']}')")
        err = jsonschema.exceptions.best_match(validator.iter_errors(row))
        if err is not None:
            col = err.absolute_path[0] if err.absolute_path else "?"
            raise InputError(f"{at[i]}, column '{col}': {row.get(col, '')!r} is not allowed{_hint(props.get(col, {}))}")
    dup = sheet["sample"][sheet["sample"].duplicated()].unique().tolist()
    if dup:
        on = [str(lines[i]) for i in range(len(sheet)) if sheet["sample"].iloc[i] == dup[0] and i < len(lines)]
        raise InputError(
            f"{where}: duplicated sample IDs {dup} ('{dup[0]}' on lines {' and '.join(on)}, column 'sample'); "
            "each sample needs its own ID"
        )
    workdir = Path(workdir)
    for i, p in enumerate(sheet["path"]):
        if not GENERATED.match(p) and not (workdir / p).exists():
            raise InputError(
                f"{at[i]}, column 'path': '{p}' does not exist (relative paths are read from the working "
                f"directory {workdir.resolve()}); fix the path"
            )
    return sheet.set_index("sample", drop=False)


def _sample_file(snakemake, sample: str) -> str | None:
    """The sample's input path from the sample sheet (for errors raised after loading), else None."""
    try:
        import pandas as pd

        sheet = pd.read_csv(snakemake.config["samples"], sep="\t", dtype=str, comment="#").fillna("")
        sheet.columns = [str(c).strip() for c in sheet.columns]
        hit = sheet.loc[sheet["sample"].str.strip() == sample, "path"]
        return str(hit.iloc[0]).strip() if len(hit) else None
    except Exception:  # noqa: BLE001 - only used to enrich a message
        return None


@contextlib.contextmanager
def step(snakemake):
    """Route logging and warnings to ``snakemake.log[0]``; turn any error into one ``ERROR:`` line.

    On an :class:`InputError` the line ``ERROR: <message>`` (completed with the sample and its
    input file when the error lacks them) goes to the log and to stderr and the script exits 1, so
    Snakemake deletes the rule's outputs (no partial output) and names the log. Any other exception
    writes its traceback to the log and a one-line ``ERROR:`` naming the step, the sample and the log.
    """
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", category=FutureWarning)
    sample = dict(snakemake.wildcards.items()).get("sample")
    try:
        yield
        # the outputs are written: a Ctrl-C from now on (interpreter teardown takes up to a second) would make
        # Snakemake report a finished step as failed and, while it is stopping, leave its complete outputs behind
        # marked incomplete; so the rest of the script's process ignores SIGINT (SIGTERM and SIGKILL still end it)
        if type(snakemake).__module__.startswith("snakemake"):  # a script Snakemake started, not a caller's process
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        loaded = [m for m in HEAVY_MODULES if m in sys.modules]
        logging.getLogger("cscniche").info("modules imported: %s", " ".join(loaded) or "none")
    except InputError as exc:
        if exc.path is None and (exc.sample or sample):
            exc = InputError(
                exc.message, sample=exc.sample or sample, path=_sample_file(snakemake, exc.sample or sample)
            )
        logging.getLogger("cscniche").error("%s", exc)
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - never end in an unexplained traceback on the console
        logfile = snakemake.log[0] if snakemake.log else None
        if logfile:
            with open(logfile, "a") as f:
                f.write(traceback.format_exc())
        first = (str(exc).strip().splitlines() or [""])[0]
        who = f"sample '{sample}', " if sample else ""
        see = f"the traceback is in {logfile}" if logfile else "see the traceback above"
        print(
            f"ERROR: {who}step '{snakemake.rule}': unexpected {type(exc).__name__}: {first}; {see}; "
            "this is a bug or an unforeseen input: please report it with that log",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)


def section(snakemake, name: str, **overrides):
    """The parameter object (:mod:`cscniche._params`) of the config section passed as the rule's param ``name``.

    ``overrides`` replace keys (e.g. a path resolved as an input); an unknown key raises a ``TypeError`` naming it.
    """
    from ._params import SECTIONS

    return SECTIONS[name].from_mapping(getattr(snakemake.params, name), **overrides)


def run_table_stage(snakemake, fn) -> None:
    """Call a per-sample stage that maps an AnnData to one table: ``fn(adata, sample=..., **keywords)``.

    The AnnData is the input named ``h5ad`` (else the first input); every other named input is passed as a
    keyword with its path (e.g. ``genes``); every param is passed as a keyword, a param named as a config
    section (e.g. ``neighbours``) as that section's parameter object (:func:`section`). The table is written
    tab-separated to the first output; a stage that returns a dict of tables writes each to the output of
    the same name (every output named). Run it inside :func:`step`.
    """
    import anndata as ad

    from ._params import SECTIONS

    inputs = dict(snakemake.input.items())
    h5ad = inputs.pop("h5ad", snakemake.input[0])
    keywords = dict(inputs)
    for name, value in snakemake.params.items():
        if name in keywords:
            raise TypeError(f"rule '{snakemake.rule}': the keyword '{name}' is given twice (input and param)")
        keywords[name] = section(snakemake, name) if name in SECTIONS else value
    table = fn(ad.read_h5ad(h5ad), sample=snakemake.wildcards.sample, **keywords)
    if not isinstance(table, dict):
        table = {None: table}
    outputs = dict(snakemake.output.items())
    if set(table) != ({None} if None in table else set(outputs)):
        raise TypeError(
            f"rule '{snakemake.rule}': the stage returned tables {sorted(map(str, table))}, not {sorted(outputs)}"
        )
    for name, t in table.items():
        t.to_csv(snakemake.output[0] if name is None else outputs[name], sep="\t", index=False)


# ---- one job per sample: the per-sample steps run one after another in one process (rule sample_steps) ----


class Files(list):
    """A Snakemake-like list of files or values: positional entries, and names (``.h5ad``, ``.items()``).

    Built from ``(name or None, value)`` pairs; with ``flatten``, a named list of files (e.g. ``gene_sets``)
    adds each file to the list and its name returns them all, as in Snakemake's own ``input`` and ``output``.
    """

    def __init__(self, entries=(), *, flatten: bool = True):
        flat, names = [], {}
        for name, value in entries:
            if flatten and isinstance(value, (list, tuple)):
                flat.extend(value)
                value = list(value)
            else:
                flat.append(value)
            if name is not None:
                names[name] = value
        super().__init__(flat)
        self._names = names

    def __getattr__(self, name):
        names = self.__dict__.get("_names", {})
        if name in names:
            return names[name]
        raise AttributeError(name)

    def items(self):
        return list(self._names.items())

    def keys(self):
        return list(self._names)


class StepJob:
    """What a step's thin script reads from ``snakemake``, for one step of a sample run in a shared process."""

    def __init__(self, plan: dict, *, config: dict, wildcards: dict, scriptdir: str):
        self.rule = plan["rule"]
        self.input = Files(plan["input"])
        self.output = Files(plan["output"])
        self.log = Files(plan["log"])
        self.params = Files(plan["params"], flatten=False)
        self.wildcards = Files(list(wildcards.items()), flatten=False)
        self.threads = plan.get("threads", 1)
        self.resources = Files(flatten=False)
        self.config = config
        self.scriptdir = scriptdir


def run_steps(snakemake) -> None:
    """Run a sample's steps (``snakemake.params.plan``: one dict per step, in order) in this one process.

    Each step is its own thin script, run as Snakemake would run it (``runpy``) with a :class:`StepJob` in place
    of ``snakemake``: it reads and writes the same files, logs to its own log and fails the same way (one
    ``ERROR:`` line naming the sample and the step, exit 1; Snakemake then deletes every output of the job).
    Only the imports are shared, which is what a small sample's steps mostly spend their time on. The wall time
    of each step goes to this job's log. The files of ``snakemake.params.scratch`` (intermediate files no other
    job reads, with ``keep_intermediates: false``) are deleted when the job ends, also when a step fails.
    """
    import os
    import runpy
    import time

    os.environ["MPLBACKEND"] = "Agg"  # before any step imports matplotlib (scanpy does): figures go to files only
    wildcards = dict(snakemake.wildcards.items())
    lines = []
    try:
        for plan in snakemake.params.plan:
            scriptdir = str(Path(plan["script"]).parent)
            job = StepJob(plan, config=snakemake.config, wildcards=wildcards, scriptdir=scriptdir)
            start = time.perf_counter()
            runpy.run_path(plan["script"], init_globals={"snakemake": job}, run_name="__main__")
            lines.append(f"{plan['rule']}\t{time.perf_counter() - start:.2f}")
            if snakemake.log:
                Path(snakemake.log.steps).write_text("step\tseconds\n" + "\n".join(lines) + "\n")
    finally:  # files only the steps of this job read (keep_intermediates: false): gone, whatever happened
        for path in dict(snakemake.params.items()).get("scratch", []):
            Path(path).unlink(missing_ok=True)
    if type(snakemake).__module__.startswith("snakemake"):  # outputs complete: see step() on SIGINT
        signal.signal(signal.SIGINT, signal.SIG_IGN)


#: where the demo's samples are generated (rule demo_data): small, 1,200 cells each
DEMO_PREFIX = "resources/demo/"


def input_size_mb(path: str | Path) -> float:
    """Size of a sample's input in MB; a folder (a 10x matrix folder) counts every file in it."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1024**2
    return p.stat().st_size / 1024**2


def one_job_samples(sheet, below_mb: float, *, workdir: str | Path = ".") -> list[str]:
    """The samples whose steps run as one job (config ``one_job_below_mb``): local inputs smaller than
    ``below_mb`` MB, and the demo's. A fetched sample (its size is unknown when the workflow is parsed) runs step
    by step, as does every sample with ``below_mb`` 0.
    """
    if not below_mb or below_mb <= 0:
        return []
    out = []
    for sample, path in sheet["path"].items():
        path = str(path)
        if path.startswith(DEMO_PREFIX):
            out.append(sample)
        elif not GENERATED.match(path) and input_size_mb(Path(workdir) / path) < below_mb:
            out.append(sample)
    return out
