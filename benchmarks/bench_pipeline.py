"""Benchmark: the whole workflow on one large sample, time and peak memory per step.

Resamples a real tumour (default Wu et al. 2021 CID4465 from ../shared/data: 1,564 cells, 29,733 genes,
author labels) to ``--cells`` cells: cells drawn with replacement (seeded), each copy's counts binomially
thinned by a factor drawn from U(0.6, 1), so no two copies are equal. Then runs the workflow on it with the
default config (``--cores``) and prints, from Snakemake's own ``benchmark:`` files, the wall time and the peak
resident memory (max_rss) of every step, and the total wall time.

    python benchmarks/bench_pipeline.py --cells 100000 --workdir /tmp/bench_pipe

The resampled tumour has the real tumour's composition, genes and depth (~2,000 detected genes per cell), so
the steps see realistic data; its cells are not new biology. Quote the figures with the machine they ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared/data/tumour/wu2021_tnbc_CID4465.h5ad"


def resample(source: Path, out: Path, n_cells: int, seed: int = 0) -> None:
    """Write ``n_cells`` thinned copies of the cells of ``source`` (raw integer counts in X) to ``out``."""
    import anndata as ad
    from scipy import sparse

    a = ad.read_h5ad(source)
    X = sparse.csr_matrix(a.X)
    if X.nnz and not np.allclose(X.data, np.round(X.data)):
        raise ValueError(f"{source}: X does not hold raw counts")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, a.n_obs, n_cells)
    parts = []
    for start in range(0, n_cells, 20000):
        rows = pick[start : start + 20000]
        c = X[rows].tocsr()
        keep = rng.uniform(0.6, 1.0, rows.size)
        c.data = rng.binomial(c.data.astype(np.int64), np.repeat(keep, np.diff(c.indptr))).astype(np.float32)
        c.eliminate_zeros()
        parts.append(c)
    obs = a.obs.iloc[pick].copy()
    obs.index = [f"{b}_{i}" for i, b in enumerate(a.obs_names[pick])]
    out.parent.mkdir(parents=True, exist_ok=True)
    ad.AnnData(sparse.vstack(parts, format="csr"), obs=obs, var=a.var.copy()).write_h5ad(out)


def per_step(workdir: Path) -> list[dict]:
    """Rows of Snakemake's benchmark files under ``workdir/logs``: step, seconds, max_rss (MB)."""
    import pandas as pd

    rows = []
    for f in sorted((workdir / "logs").rglob("*.benchmark.tsv")):
        b = pd.read_csv(f, sep="\t")
        rss = pd.to_numeric(b["max_rss"], errors="coerce")
        rows.append(
            {
                "step": f.name.removesuffix(".benchmark.tsv"),
                "sample": f.parent.name,
                "seconds": float(b["s"].iloc[0]),
                "max_rss_gb": float(rss.iloc[0]) / 1024 if rss.notna().any() else float("nan"),
            }
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--cell-type-key", default="celltype_major")
    ap.add_argument("--workdir", type=Path, default=Path("bench_pipeline"))
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args(argv)
    if not args.source.exists():
        print(f"source {args.source} not found (../shared/data is needed)", file=sys.stderr)
        return 2
    wd = args.workdir.resolve()
    sample = f"resampled_{args.cells}"
    data = wd / "data" / f"{sample}.h5ad"
    if not data.exists():
        t0 = time.perf_counter()
        resample(args.source, data, args.cells)
        print(f"resampled {args.source.name} to {args.cells} cells in {time.perf_counter() - t0:.0f} s", flush=True)
    sheet = wd / "samples.tsv"
    sheet.write_text(f"sample\tpath\tformat\tcell_type_key\n{sample}\t{data}\th5ad\t{args.cell_type_key}\n")
    (wd / "config.yaml").write_text(f"samples: {sheet}\n")
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
           "--cores", str(args.cores), "--configfile", str(wd / "config.yaml"), "--quiet", "rules"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        return proc.returncode
    rows = per_step(wd)
    print(f"\n{args.cells} cells, {platform.machine()}, {os.cpu_count()} cores, --cores {args.cores}")
    print("| step | wall time (s) | peak memory (GB) |\n|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["seconds"]):
        print(f"| {r['step']} ({r['sample']}) | {r['seconds']:.0f} | {r['max_rss_gb']:.2f} |")
    print(f"| whole workflow (wall) | {wall:.0f} | {max(r['max_rss_gb'] for r in rows):.2f} (largest step) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
