"""Benchmark: our scoring kernels against scanpy score_genes and pyucell, side by side in one run.

Generates 10x-like synthetic data (default 200,000 cells x 30,000 genes, ~2,150 detected genes per
cell, log-normalised CSR float32) and five signatures (4, 42, 32, 87 and 166 genes: the sizes of the
CSC markers, Hallmark Wnt, NOTCH, IL-6/JAK/STAT3 and CancerSEA stemness), then runs each method in a
fresh Python process and prints, per method: wall time of the scoring call (imports included), peak memory
of the process (read included; also the peak right after the read), and agreement with the reference
method. Our numba kernels are cached on disk (``cache=True``): the first call after an install or an edit
of ``methods.py`` compiles them (a few seconds) and is timed as such; later runs load them.

    python benchmarks/bench_scoring.py --cells 200000          # the issue's size (needs ~12 GB)
    python benchmarks/bench_scoring.py --cells 20000 --quick   # a smoke run

Ratios are what to quote: the machine is shared and noisy, all methods run in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SET_SIZES = (4, 42, 32, 87, 166)
METHODS = ("read", "read_backed_mean", "scanpy_score_genes", "ours_score_genes", "pyucell", "ours_ucell")


def generate(path: Path, n_cells: int, n_genes: int, detected: int, seed: int = 0) -> None:
    """Write a log-normalised 10x-like AnnData: gene popularity log-normal, counts 1 + geometric."""
    import anndata as ad
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(seed)
    pop = rng.lognormal(0.0, 1.5, n_genes)
    p = pop / pop.sum()
    cdf = np.cumsum(p)
    chunks = []
    for start in range(0, n_cells, 10000):
        m = min(10000, n_cells - start)
        # draw with replacement, then keep unique genes per cell; oversample so ~`detected` remain
        draw = np.searchsorted(cdf, rng.random((m, int(detected * 1.6))))
        draw = np.minimum(draw, n_genes - 1)
        draw.sort(axis=1)
        keep = np.ones_like(draw, dtype=bool)
        keep[:, 1:] = draw[:, 1:] != draw[:, :-1]
        rows = np.repeat(np.arange(m), keep.sum(axis=1))
        cols = draw[keep]
        vals = (1 + rng.geometric(0.55, size=cols.size)).astype(np.float32)
        c = sparse.csr_matrix((vals, (rows, cols)), shape=(m, n_genes), dtype=np.float32)
        lib = np.asarray(c.sum(axis=1)).ravel()
        c = sparse.diags((1e4 / lib).astype(np.float32)) @ c
        c.data = np.log1p(c.data)
        chunks.append(c.astype(np.float32).tocsr())
    X = sparse.vstack(chunks, format="csr")
    genes = [f"G{i:05d}" for i in range(n_genes)]
    a = ad.AnnData(X, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]), var=pd.DataFrame(index=genes))
    sets = {}
    order = rng.permutation(n_genes)
    at = 0
    for k, size in enumerate(SET_SIZES):
        sets[f"SET{k}_{size}"] = [genes[i] for i in sorted(order[at : at + size])]
        at += size
    a.uns["bench_sets"] = json.dumps(sets)
    a.write_h5ad(path)


def _peak_gb() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it does not carry over across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_one(method: str, data: Path, out: Path) -> dict:
    """Run one method in this process; return {'seconds', 'peak_gb'} and save the scores to ``out``."""
    import anndata as ad

    t0 = time.perf_counter()
    a = ad.read_h5ad(data, backed="r" if method == "read_backed_mean" else None)
    t_read = time.perf_counter() - t0
    peak_read = _peak_gb()  # the data alone; the method's own memory is peak_gb - this
    sets = json.loads(a.uns["bench_sets"])
    names = list(sets)
    idx = {g: i for i, g in enumerate(a.var_names)}
    set_idx = [[idx[g] for g in sets[n]] for n in names]
    scores = None
    t0 = time.perf_counter()
    if method == "read":
        pass
    elif method == "read_backed_mean":
        from cscniche.stemness.kernels import _methods as methods

        parts = []
        for start in range(0, a.n_obs, 20000):
            parts.append(methods.set_means(a.X[start : start + 20000], set_idx))
        scores = np.vstack(parts)
    elif method == "scanpy_score_genes":
        import scanpy as sc

        for n in names:
            sc.tl.score_genes(a, sets[n], ctrl_size=50, score_name=n, random_state=0)
        scores = a.obs[names].to_numpy()
    elif method == "ours_score_genes":
        from cscniche.stemness.kernels import _methods as methods

        scores, _ = methods.score_genes(a.X, set_idx, ctrl_size=50, seed=0)
    elif method == "pyucell":
        import pyucell

        pyucell.compute_ucell_scores(a, signatures=sets, max_rank=1500)
        scores = a.obs[[f"{n}_UCell" for n in names]].to_numpy()
    elif method == "ours_ucell":
        from cscniche.stemness.kernels import _methods as methods

        scores = methods.ucell(a.X, set_idx, max_rank=1500)
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - t0
    if scores is not None:
        np.save(out, np.asarray(scores, dtype=np.float64))
    return {
        "method": method,
        "read_seconds": t_read,
        "seconds": seconds,
        "peak_gb": _peak_gb(),
        "peak_read_gb": peak_read,
    }


def _spearman_min(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(min(spearmanr(a[:, k], b[:, k]).statistic for k in range(a.shape[1])))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=200_000)
    ap.add_argument("--genes", type=int, default=30_000)
    ap.add_argument("--detected", type=int, default=2150)
    ap.add_argument("--workdir", type=Path, default=Path("bench_out"))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="smaller data: 20k cells (unless --cells is given)")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.quick and args.cells == 200_000:
        args.cells = 20_000
    data = args.workdir / f"synthetic_{args.cells}x{args.genes}_{args.detected}.h5ad"
    if args.run:
        res = run_one(args.run, data, args.workdir / f"scores_{args.run}.npy")
        print(json.dumps(res))
        return 0
    if not data.exists():
        t0 = time.perf_counter()
        generate(data, args.cells, args.genes, args.detected)
        print(f"generated {data} in {time.perf_counter() - t0:.1f} s", flush=True)
    results = {}
    for m in args.methods:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(
            [sys.executable, __file__, "--run", m, "--cells", str(args.cells), "--genes", str(args.genes),
             "--detected", str(args.detected), "--workdir", str(args.workdir)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if proc.returncode != 0:
            print(f"{m}: FAILED\n{proc.stderr[-3000:]}", flush=True)
            continue
        results[m] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[m]
        print(
            f"{m:22s} scoring {r['seconds']:8.2f} s   read {r['read_seconds']:6.2f} s   peak {r['peak_gb']:6.2f} GB"
            f" (after the read {r['peak_read_gb']:5.2f} GB)",
            flush=True,
        )

    def scores(m):
        p = args.workdir / f"scores_{m}.npy"
        return np.load(p) if p.exists() and m in results else None

    summary = {
        "cells": args.cells,
        "genes": args.genes,
        "detected": args.detected,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "results": results,
    }
    ref, ours = scores("scanpy_score_genes"), scores("ours_score_genes")
    if ref is not None and ours is not None:
        summary["score_genes_speedup"] = (
            results["scanpy_score_genes"]["seconds"] / results["ours_score_genes"]["seconds"]
        )
        summary["score_genes_min_spearman"] = _spearman_min(ref, ours)
        summary["score_genes_max_abs_diff"] = float(np.max(np.abs(ref - ours)))
    ref, ours = scores("pyucell"), scores("ours_ucell")
    if ref is not None and ours is not None:
        summary["ucell_speedup"] = results["pyucell"]["seconds"] / results["ours_ucell"]["seconds"]
        summary["ucell_max_abs_diff"] = float(np.max(np.abs(ref - ours)))
    if "read" in results and "ours_score_genes" in results:
        summary["ours_score_genes_over_read"] = results["ours_score_genes"]["seconds"] / results["read"]["read_seconds"]
    if "read" in results and "ours_ucell" in results:
        summary["ours_ucell_over_read"] = results["ours_ucell"]["seconds"] / results["read"]["read_seconds"]
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=1))
    (args.workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
