"""Benchmark: a cohort of many small samples through the default workflow; per-step fixed cost.

Most public tumour studies are many small samples (GSE149614: 10 patients x 4 sites; Wu 2021: 26 tumours).
This script builds a cohort of ``--samples`` samples of ``--cells`` cells each, resampled (seeded, with
replacement, :func:`bench_pipeline.resample` with ``--pool`` cells summed per synthetic cell) from the real
single-cell tumours in ../shared/data (Wu 2021 CID4465 and Moncada 2020 PDAC-A, alternating; author labels
kept), assigns two samples per patient, runs the default workflow on ``--cores`` and prints:

- the wall time of the whole run and the sum of the step times (Snakemake's ``benchmark:`` files);
- per step (rule): number of jobs, mean wall time, peak resident memory, and the time the step's script spends
  importing, measured afterwards by importing that script's top-level imports, plus the heavy packages the
  step loaded later inside functions (the ``modules imported:`` line of its log), in a fresh interpreter
  (``python -c``, warm file cache, the same venv) and expressed as a share of the step's mean wall time.

    python benchmarks/bench_cohort.py                       # 40 x 2,500 cells, --cores 2
    python benchmarks/bench_cohort.py --samples 4 --cells 1000 --workdir /tmp/bc_small

Quote the numbers with the machine they ran on; on a shared machine compare ratios from one run.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_pipeline import per_step, resample  # noqa: E402

SHARED = ROOT.parent / "shared/data/tumour"
#: source tumour -> its author cell-type column
SOURCES = {
    "wu2021_tnbc_CID4465.h5ad": "celltype_major",
    "moncada2020_pdac_a_sc.h5ad": "Cell",
}


def build_cohort(
    workdir: Path, n_samples: int, n_cells: int, *, pool: int, seed: int = 0, shared: Path = SHARED
) -> Path:
    """Write the samples (skipped when present) and a sample sheet; returns the sheet's path."""
    rows = ["sample\tpath\tformat\tcell_type_key\tpatient"]
    names = list(SOURCES)
    for i in range(n_samples):
        src = names[i % len(names)]
        key = SOURCES[src]
        sample = f"s{i:03d}_{src.split('_')[0]}"
        out = workdir / "data" / f"{sample}.h5ad"
        if not out.exists():
            resample(shared / src, out, n_cells, seed=seed + i, pool=pool, cell_type_key=key)
        rows.append(f"{sample}\t{out}\th5ad\t{key}\tP{i // 2:02d}")
    sheet = workdir / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def script_of_rules(snakemake_dir: Path = ROOT / "workflow/rules") -> dict[str, Path]:
    """Rule name -> the script it runs (parsed from the rule files: ``rule <name>:`` ... ``script:`` ...)."""
    out, rule = {}, None
    for smk in sorted(snakemake_dir.glob("*.smk")):
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            if s.startswith("rule ") and s.endswith(":"):
                rule = s[5:-1].strip()
            elif s == "script:" and rule and i + 1 < len(lines):
                rel = lines[i + 1].strip().strip('",')
                out[rule] = (smk.parent / rel).resolve()
    return out


def modules_of_step(workdir: Path, rule: str) -> list[str]:
    """The heavy packages a rule's job loaded, from the ``modules imported:`` line its log ends with
    (:func:`cscniche._smk.step`; one job's log, e.g. ``logs/<sample>/<rule>.log``)."""
    for log in sorted(workdir.glob(f"logs/**/{rule}.log")):
        for line in reversed(log.read_text(errors="replace").splitlines()):
            if "modules imported: " in line:
                mods = line.split("modules imported: ", 1)[1].split()
                return [m for m in mods if m != "none"]
    return []


def _import_statement(module: str) -> str:
    # the steps import umap/pynndescent through cscniche._numba.import_umap (numba's on-disk cache on): a plain
    # `import umap` would time compiling their kernels, which the steps do not pay
    if module in ("umap", "pynndescent"):
        return "from cscniche._numba import import_umap; import_umap()"
    return f"import {module}"


def import_seconds(script: Path, repeats: int = 2, *, src: Path = ROOT / "src", modules=()) -> float:
    """Seconds a fresh interpreter takes for the script's top-level imports (best of ``repeats``).

    ``src`` is the library the imports resolve to (another checkout's ``src`` for a before/after comparison);
    ``modules``: packages the step imports later, inside functions (:func:`modules_of_step`), timed too.
    """
    tree = ast.parse(script.read_text())
    stmts = [
        ast.unparse(node)
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom) and "snakemake" not in ast.unparse(node)
    ] + [_import_statement(m) for m in modules]
    code = (
        f"import sys, time; sys.path.insert(0, {str(src)!r}); t = time.perf_counter()\n"
        + "\n".join(stmts)
        + "\nprint(time.perf_counter() - t)"
    )
    best = float("inf")
    for _ in range(repeats):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_no_pythonpath())
        if res.returncode != 0:
            return float("nan")
        best = min(best, float(res.stdout.strip().splitlines()[-1]))
    return best


def _no_pythonpath() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def compare_imports(other: Path, repeats: int = 3) -> None:
    """Per script, import seconds of another checkout (``other``, e.g. a clone of an older commit) and of this
    one, measured alternately in one run (a shared machine's load hits both alike)."""
    mine, theirs = script_of_rules(), script_of_rules(other / "workflow/rules")
    print(f"| script | {other.name} (s) | this checkout (s) | ratio |")
    print("|---|---|---|---|")
    for rule in sorted(set(mine) | set(theirs)):
        a = import_seconds(theirs[rule], repeats, src=other / "src") if rule in theirs else float("nan")
        b = import_seconds(mine[rule], repeats) if rule in mine else float("nan")
        print(f"| {rule} | {a:.2f} | {b:.2f} | {b / a:.2f} |", flush=True)


def steps_of_one_job_samples(workdir: Path):
    """Wall time of each step inside rule sample_steps (its ``logs/<sample>/steps.tsv``): step, sample, seconds."""
    import pandas as pd

    frames = [pd.read_csv(f, sep="\t").assign(sample=f.parent.name) for f in sorted(workdir.glob("logs/*/steps.tsv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "seconds", "sample"])


def summarise(workdir: Path, wall: float) -> list[dict]:
    """Per-rule rows (jobs, mean and total seconds, peak memory, import seconds and share) and print them."""
    import pandas as pd

    steps = pd.DataFrame(per_step(workdir))
    scripts = script_of_rules()
    rows = []
    for step, g in steps.groupby("step", sort=False):
        mods = modules_of_step(workdir, step)
        imp = import_seconds(scripts[step], modules=mods) if step in scripts else float("nan")
        mean = float(g["seconds"].mean())
        rows.append(
            {
                "step": step,
                "jobs": len(g),
                "mean_s": mean,
                "total_s": float(g["seconds"].sum()),
                "peak_gb": float(g["max_rss_gb"].max()),
                "import_s": imp,
                "import_share": imp / mean if mean > 0 else float("nan"),
            }
        )
    rows.sort(key=lambda r: -r["total_s"])
    print(f"\n{platform.machine()}, {os.cpu_count()} cores")
    print("| step | jobs | mean wall (s) | total (s) | peak memory (GB) | import (s) | import share |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['step']} | {r['jobs']} | {r['mean_s']:.1f} | {r['total_s']:.0f} | {r['peak_gb']:.2f} | "
            f"{r['import_s']:.2f} | {r['import_share']:.0%} |"
        )
    inner = steps_of_one_job_samples(workdir)
    if len(inner):
        print("\nsteps inside rule sample_steps (one job per small sample; one_job_below_mb), wall time per step:")
        print("| step | samples | mean (s) | total (s) |")
        print("|---|---|---|---|")
        for step, g in inner.groupby("step", sort=False):
            print(f"| {step} | {len(g)} | {g['seconds'].mean():.1f} | {g['seconds'].sum():.0f} |")
    total = float(steps["seconds"].sum())
    print(f"| whole workflow | {len(steps)} | | wall {wall:.0f} (sum of steps {total:.0f}) | "
          f"{steps['max_rss_gb'].max():.2f} | | |")  # fmt: skip
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--cells", type=int, default=2500)
    ap.add_argument("--pool", type=int, default=1, help="source cells summed per synthetic cell (1: source depth)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("bench_cohort"))
    ap.add_argument("--one-job-below-mb", type=float, default=None,
                    help="config one_job_below_mb (default: the config's; 0 runs every sample step by step)")  # fmt: skip
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--summarise-only", action="store_true", help="print the tables of an earlier run")
    ap.add_argument("--shared", type=Path, default=SHARED, help="folder of the source tumours (shared/data/tumour)")
    ap.add_argument("--compare-imports", type=Path, metavar="CHECKOUT",
                    help="only print import seconds per script, this checkout against another one")  # fmt: skip
    args = ap.parse_args(argv)
    if args.compare_imports:
        compare_imports(args.compare_imports.resolve())
        return 0
    shared = args.shared.resolve()
    missing = [s for s in SOURCES if not (shared / s).exists()]
    if missing:
        print(f"source tumours not found in {shared}: {missing} (give --shared)", file=sys.stderr)
        return 2
    wd = args.workdir.resolve()
    wd.mkdir(parents=True, exist_ok=True)
    if args.summarise_only:
        summarise(wd, float("nan"))
        return 0
    t0 = time.perf_counter()
    sheet = build_cohort(wd, args.samples, args.cells, pool=args.pool, shared=shared)
    print(f"cohort of {args.samples} x {args.cells} cells written in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.generate_only:
        return 0
    one_job = "" if args.one_job_below_mb is None else f"one_job_below_mb: {args.one_job_below_mb}\n"
    (wd / "config.yaml").write_text(f"samples: {sheet}\n{one_job}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
           "--cores", str(args.cores), "--configfile", str(wd / "config.yaml"), "--quiet", "rules"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        return proc.returncode
    print(f"{args.samples} samples x {args.cells} cells, --cores {args.cores}: wall {wall:.0f} s ({wall / 60:.1f} min)")
    summarise(wd, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
