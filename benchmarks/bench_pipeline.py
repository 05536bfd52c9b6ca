"""Benchmark: the whole workflow on one large sample, time and peak memory per step.

Builds a synthetic sample of ``--cells`` cells from a real tumour (default Wu et al. 2021 CID4465 from
../shared/data: 1,564 cells, 29,733 genes, raw counts, author labels in ``obs['celltype_major']``), then runs
the workflow on it with the default config (``--cores``) and prints, from Snakemake's own ``benchmark:`` files,
the wall time and the peak resident memory (max_rss) of every step, and the total wall time.

    python benchmarks/bench_pipeline.py --cells 100000 --workdir /tmp/bench_pipe
    python benchmarks/bench_pipeline.py --cells 1000000 --workdir /work/bp1m --generate-only   # data only

The source tumour is shallow (median 410 detected genes per cell), while 10x data of the issue's reference
depth has ~2,150. So each synthetic cell is the SUM of the counts of ``--pool`` cells drawn (with replacement,
seeded) from one author cell type, binomially thinned by a per-cell factor drawn from U(0.6, 1): the first
cell of a pool is drawn from all cells, so the cell-type composition follows the source's. With the default
``--pool 8`` (seed 0, 1,000,000 cells) the median synthetic cell has 1,962 detected genes and 5,192 counts
(mean 2,213 detected genes: 2,212,637,663 stored values); without pooling (``--pool 1``) 338 genes and 533
counts. The cells are generated and written in blocks of 20,000 (:class:`cscniche.load._ondisk.H5adWriter`,
uncompressed), so the generator never holds the whole matrix: 1,000,000 cells took 5 min 54 s wall and 2.1 GB
peak resident memory (one core, shared 2-core machine), for an 18.0 GB file.

The synthetic cells carry realistic depth, genes and composition; they are not new biology (a pool mixes
cells of one type). Quote the figures with the machine they ran on.
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
#: cells summed per synthetic cell: the median synthetic cell then has ~2,000 detected genes (see above)
DEFAULT_POOL = 8
#: per-cell QC columns of the source that describe the source cell; recomputed for the synthetic cell
QC_COLUMNS = ("nCount_RNA", "nFeature_RNA", "percent.mito")


def _open_writer(out: Path, var):
    """The project's block writer (:class:`cscniche.load._ondisk.H5adWriter`: int64 indptr, 2**18-value HDF5 chunks)."""
    sys.path.insert(0, str(ROOT / "src"))
    from cscniche.load._ondisk import H5adWriter

    return H5adWriter(out, var=var)


def resample(
    source: Path,
    out: Path,
    n_cells: int,
    seed: int = 0,
    *,
    pool: int = DEFAULT_POOL,
    cell_type_key: str = "celltype_major",
    block_cells: int = 20_000,
) -> dict:
    """Write ``n_cells`` synthetic cells, each the thinned sum of ``pool`` cells of one type of ``source``.

    ``source`` holds raw integer counts in X and the cell types in ``obs[cell_type_key]``. Every random draw
    comes from one generator seeded with ``seed`` in a fixed order, so the file does not depend on
    ``block_cells`` (cells generated and written per block, which sets the memory). ``obs`` holds the source
    annotations of each pool's first cell (its QC columns recomputed), ``pooled_from`` (the pooled source
    barcodes joined by ';'); cell ids are ``<first barcode>_<i>``. Returns the median detected genes and counts
    per cell and the number of stored values.
    """
    import anndata as ad
    from scipy import sparse

    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    a = ad.read_h5ad(source)
    if cell_type_key not in a.obs:
        raise ValueError(f"{source}: no obs column '{cell_type_key}' (cell types)")
    X = sparse.csr_matrix(a.X, dtype=np.float32)
    if X.nnz and not np.array_equal(X.data, np.round(X.data)):
        raise ValueError(f"{source}: X does not hold raw counts")
    types = a.obs[cell_type_key].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    pick = np.empty((n_cells, pool), dtype=np.int64)
    pick[:, 0] = rng.integers(0, a.n_obs, n_cells)
    for t in np.unique(types):  # sorted: a fixed order of draws
        members = np.flatnonzero(types == t)
        rows = np.flatnonzero(types[pick[:, 0]] == t)
        pick[rows, 1:] = members[rng.integers(0, members.size, (rows.size, pool - 1))]
    keep = rng.uniform(0.6, 1.0, n_cells)
    mito = np.asarray(a.var_names.str.upper().str.startswith("MT-"))
    genes = np.empty(n_cells, dtype=np.int64)
    counts = np.empty(n_cells, dtype=np.float64)
    mito_counts = np.empty(n_cells, dtype=np.float64)
    ones = np.ones(block_cells * pool, dtype=np.float32)
    with _open_writer(out, a.var.copy()) as w:
        for start in range(0, n_cells, block_cells):
            stop = min(start + block_cells, n_cells)
            n = stop - start
            P = sparse.csr_matrix(
                (ones[: n * pool], pick[start:stop].ravel(), np.arange(0, n * pool + 1, pool)), shape=(n, a.n_obs)
            )
            c = (P @ X).tocsr()  # sums of integer counts: exact in float32 below 2**24
            c.sort_indices()
            p = np.repeat(keep[start:stop], np.diff(c.indptr))
            c.data = rng.binomial(c.data.astype(np.int64), p).astype(np.float32)
            del p
            c.eliminate_zeros()
            genes[start:stop] = np.diff(c.indptr)
            counts[start:stop] = np.asarray(c.sum(axis=1)).ravel()
            mito_counts[start:stop] = np.asarray(c[:, mito].sum(axis=1)).ravel() if mito.any() else 0.0
            w.append(c)
            del c, P
        obs = a.obs.iloc[pick[:, 0]].copy()
        names = a.obs_names.to_numpy().astype(str)
        obs.index = [f"{b}_{i}" for i, b in enumerate(names[pick[:, 0]])]
        obs["pooled_from"] = [";".join(r) for r in names[pick]]
        recomputed = {
            "nCount_RNA": counts.astype(np.int64),
            "nFeature_RNA": genes,
            "percent.mito": 100 * mito_counts / np.maximum(counts, 1),
        }
        for col in QC_COLUMNS:
            if col in obs:
                obs[col] = recomputed[col].astype(obs[col].dtype)
        w.set_obs(obs)
    return {"median_genes": float(np.median(genes)), "median_counts": float(np.median(counts)), "nnz": int(genes.sum())}


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
    ap.add_argument("--pool", type=int, default=DEFAULT_POOL, help="source cells summed per synthetic cell")
    ap.add_argument("--generate-only", action="store_true", help="write the synthetic sample and exit")
    ap.add_argument("--drop-intermediates", action="store_true",
                    help="keep_intermediates: false (a 1,000,000-cell run writes ~18 GB per intermediate .h5ad)")  # fmt: skip
    args = ap.parse_args(argv)
    if not args.source.exists():
        print(f"source {args.source} not found (../shared/data is needed)", file=sys.stderr)
        return 2
    wd = args.workdir.resolve()
    sample = f"resampled_{args.cells}_pool{args.pool}"
    data = wd / "data" / f"{sample}.h5ad"
    if not data.exists():
        t0 = time.perf_counter()
        st = resample(args.source, data, args.cells, pool=args.pool, cell_type_key=args.cell_type_key)
        print(
            f"wrote {data}: {args.cells} cells (sums of {args.pool} cells of {args.source.name}) in "
            f"{time.perf_counter() - t0:.0f} s; median {st['median_genes']:.0f} detected genes and "
            f"{st['median_counts']:.0f} counts per cell, {st['nnz']} stored values, "
            f"{data.stat().st_size / 1e9:.1f} GB",
            flush=True,
        )
    if args.generate_only:
        return 0
    sheet = wd / "samples.tsv"
    sheet.write_text(f"sample\tpath\tformat\tcell_type_key\n{sample}\t{data}\th5ad\t{args.cell_type_key}\n")
    drop = "keep_intermediates: false\n" if args.drop_intermediates else ""
    (wd / "config.yaml").write_text(f"samples: {sheet}\n{drop}")
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
