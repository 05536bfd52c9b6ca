"""Quality control: per-cell and per-gene filters, in memory or streamed from an ``.h5ad``.

Cells are filtered on detected genes, counts and the mitochondrial share, with thresholds fixed in the config or
adapted to each sample (median +- ``n_mads`` median absolute deviations of log1p counts and log1p genes, as in the
scverse single-cell best practices), then doublets are called per sample with scanpy's Scrublet (seeded). The QC
table has one row for the whole sample (``cell_type == 'all'``) and, when the sample has author cell-type labels,
one row per cell type: cells in, cells removed by each filter (a cell can fail several), doublets, cells kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._errors import InputError
from .._params import QcParams
from ..load import _ondisk as ondisk
from ..load._readers import diagnose_counts

log = logging.getLogger(__name__)


#: QC table columns counting removed cells, in the order the figure stacks them
REMOVED = (
    "removed_low_genes",
    "removed_high_genes",
    "removed_low_counts",
    "removed_high_counts",
    "removed_high_mt",
    "doublets",
)


def _mad(x: np.ndarray) -> float:
    med = np.median(x)
    return float(np.median(np.abs(x - med)))


def qc_thresholds(
    metrics: pd.DataFrame,
    *,
    adaptive: bool = True,
    n_mads: float = 5.0,
    n_mads_high: float | None = None,
    min_genes: int = 200,
    min_counts: int = 500,
    max_pct_mt: float = 20.0,
) -> dict[str, float]:
    """The thresholds applied to one sample, from per-cell ``n_genes`` and ``total_counts``.

    ``adaptive``: a cell is removed when log1p of its genes (or counts) lies more than ``n_mads`` median absolute
    deviations (unscaled, as ``scipy.stats.median_abs_deviation``) below the sample's median, or more than
    ``n_mads_high`` above it (None: no upper bound, the default: detected genes rise with developmental potential
    (CytoTRACE), so an upper bound would remove stem-like cells first; doublets are called by Scrublet instead).
    The bounds are returned back-transformed (genes, counts). Otherwise ``min_genes``/``min_counts`` apply and
    there is no upper bound. ``max_pct_mt`` is fixed in both modes.
    """
    if not adaptive:
        return {"min_genes": float(min_genes), "max_genes": np.inf, "min_counts": float(min_counts),
                "max_counts": np.inf, "max_pct_mt": float(max_pct_mt)}  # fmt: skip
    out = {"max_pct_mt": float(max_pct_mt)}
    for col, name in (("n_genes", "genes"), ("total_counts", "counts")):
        x = np.log1p(np.asarray(metrics[col], dtype=np.float64))
        med, mad = float(np.median(x)), _mad(x)
        out[f"min_{name}"] = float(np.expm1(med - n_mads * mad))
        out[f"max_{name}"] = float(np.expm1(med + n_mads_high * mad)) if n_mads_high is not None else np.inf
    return out


def _flags(metrics: pd.DataFrame, th: dict[str, float]) -> pd.DataFrame:
    """Per cell, which filter it fails (a cell can fail several)."""
    genes = np.asarray(metrics["n_genes"], dtype=np.float64)
    counts = np.asarray(metrics["total_counts"], dtype=np.float64)
    return pd.DataFrame(
        {
            "removed_low_genes": genes < th["min_genes"],
            "removed_high_genes": genes > th["max_genes"],
            "removed_low_counts": counts < th["min_counts"],
            "removed_high_counts": counts > th["max_counts"],
            "removed_high_mt": np.asarray(metrics["pct_counts_mt"], dtype=np.float64) > th["max_pct_mt"],
        },
        index=metrics.index,
    )


def detect_doublets(counts, *, seed: int = 0, expected_rate: float = 0.05) -> tuple[np.ndarray, np.ndarray, str]:
    """Scrublet (``scanpy.pp.scrublet``, ``random_state=seed``) on raw counts (cells x genes).

    Neighbours are exact (``use_approx_neighbors=False``: sklearn brute force). Scanpy's default switches to
    pynndescent once the observed plus simulated cells pass 4,096 (about 1,370 cells), which costs ~55-75 s of numba
    compilation per process and ~7 s per 1,000 cells on a 10,000-cell batch against ~3 s exact; on the two real
    droplet tumours in ``../shared/data`` both give the same doublets (Wu CID4465 2 of 1,564, Moncada PDAC-A 6 of
    1,926; scores correlate at r > 0.9999), docs/performance.md.

    BLAS runs on one thread (threadpoolctl), so the scores do not depend on the machine's core count or on how many
    batches run at once (:func:`_doublets`).

    Returns the doublet score, the predicted-doublet mask and a note (empty, or why no doublet was called: too few
    cells, or Scrublet found no threshold).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _scrublet(counts, seed=seed, expected_rate=expected_rate)


def _scrublet(counts, *, seed: int, expected_rate: float) -> tuple[np.ndarray, np.ndarray, str]:
    import scanpy as sc

    n = counts.shape[0]
    none = np.zeros(n, dtype=bool)
    if n < 100:
        return np.full(n, np.nan), none, f"doublet detection skipped: {n} cells (Scrublet needs at least 100)"
    a = ad.AnnData(sparse.csr_matrix(counts, dtype=np.float32))
    for n_pcs in (30, 10):  # small panels: Scrublet keeps the most variable genes, maybe fewer than 30
        try:
            sc.pp.scrublet(
                a,
                expected_doublet_rate=expected_rate,
                n_prin_comps=n_pcs,
                random_state=seed,
                verbose=False,
                use_approx_neighbors=False,
            )
            break
        except Exception as exc:  # noqa: BLE001 - a failed detection is a note, not a failed run
            failed = f"doublet detection failed ({type(exc).__name__}: {exc}); no cell removed"
    else:
        return np.full(n, np.nan), none, failed
    score = a.obs["doublet_score"].to_numpy(dtype=np.float64)
    pred = a.obs["predicted_doublet"].fillna(False).to_numpy(dtype=bool)
    note = "" if pred.any() else "Scrublet called no doublet"
    return score, pred, note


def qc_table(
    metrics: pd.DataFrame,
    flags: pd.DataFrame,
    doublet: np.ndarray,
    keep: np.ndarray,
    *,
    sample: str,
    labels: pd.Series | None,
    th: dict[str, float],
    adaptive: bool,
    n_mt_genes: int,
    warn_share: float = 0.5,
) -> pd.DataFrame:
    """The QC table: one row for the sample (``cell_type`` 'all'), then one per author cell type when labelled.

    ``doublets`` counts the doublets called among cells that passed the other filters (removed unless
    ``qc.doublets`` is 'flag'). ``pct_removed`` is the
    share of the row's cells not kept; ``note`` says when that exceeds ``warn_share`` (and the type has at least
    10 cells) and, on the sample row, when there are no ``MT-`` genes or what the doublet detection reported.
    """
    groups = [("all", np.ones(len(metrics), dtype=bool))]
    if labels is not None:
        lab = pd.Series(labels, index=metrics.index).astype(str).replace({"nan": "unlabelled", "": "unlabelled"})
        groups += [(c, (lab == c).to_numpy()) for c in lab.value_counts().index]
    rows = []
    for name, m in groups:
        n_in = int(m.sum())
        row = {"sample": sample, "cell_type": name, "n_cells_in": n_in}
        for col in REMOVED[:-1]:
            row[col] = int(flags[col].to_numpy()[m].sum())
        row["doublets"] = int(doublet[m].sum())
        row["n_cells_out"] = int(keep[m].sum())
        row["pct_removed"] = round(100.0 * (1 - row["n_cells_out"] / n_in), 1) if n_in else 0.0
        row["median_genes_per_cell"] = float(np.median(metrics["n_genes"].to_numpy()[m])) if n_in else np.nan
        row["median_counts_per_cell"] = float(np.median(metrics["total_counts"].to_numpy()[m])) if n_in else np.nan
        row["median_pct_mt"] = float(np.nanmedian(metrics["pct_counts_mt"].to_numpy()[m])) if n_in else np.nan
        notes = []
        if name != "all" and n_in >= 10 and row["n_cells_out"] < (1 - warn_share) * n_in:
            notes.append(f"QC removed {row['pct_removed']:.0f}% of {name} ({n_in} -> {row['n_cells_out']})")
        row["note"] = "; ".join(notes)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["thresholds"] = "adaptive" if adaptive else "fixed"
    for k in ("min_genes", "max_genes", "min_counts", "max_counts", "max_pct_mt"):
        table[k] = th[k]
    table["n_mt_genes"] = n_mt_genes
    return table


def _finish_table(table: pd.DataFrame, *, sample: str, n_genes_in: int, n_genes_out: int, notes: list[str]) -> None:
    """Sample-level columns and notes (in place), and the log's warnings."""
    table.insert(3, "n_genes_in", n_genes_in)
    table["n_genes_out"] = n_genes_out
    first = table.index[0]
    table.loc[first, "note"] = "; ".join(
        [n for n in notes if n] + ([table.loc[first, "note"]] if table.loc[first, "note"] else [])
    )
    for note in table["note"]:
        if note:
            log.warning("sample %s: %s", sample, note)


def _check_not_empty(keep: np.ndarray, flags: pd.DataFrame, metrics: pd.DataFrame, th: dict, sample: str) -> None:
    if keep.sum() == 0:
        low_g = int(flags["removed_low_genes"].sum() + flags["removed_high_genes"].sum())
        low_c = int(flags["removed_low_counts"].sum() + flags["removed_high_counts"].sum())
        raise InputError(
            f"QC removed every cell (min_genes={th['min_genes']:g}: {low_g} low, min_counts={th['min_counts']:g}: "
            f"{low_c} low, max_pct_mt={th['max_pct_mt']:g}: {int(flags['removed_high_mt'].sum())} high; median genes "
            f"per cell {np.median(metrics['n_genes']):.0f}); lower the qc thresholds in the config",
            sample=sample,
        )


def _mt_note(n_mt: int) -> str:
    return "" if n_mt else "no MT- genes in the data: the mitochondrial filter (max_pct_mt) removed nothing"


def qc_filter(
    adata: ad.AnnData,
    *,
    sample: str,
    qc: QcParams = QcParams(),
    cell_type_key: str | None = None,
    seed: int = 0,
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Filter cells and genes on QC metrics and doublets; return the filtered AnnData and the QC table.

    Thresholds: :func:`qc_thresholds` (adaptive per sample, or ``min_genes``/``min_counts``), and at most
    ``max_pct_mt`` % of counts from mitochondrial genes (names starting with ``MT-``); counts are taken from
    ``layers['counts']``, or from ``X`` when it holds raw counts. Doublets (:func:`detect_doublets`, on the cells
    passing the filters): ``'remove'`` drops them, ``'flag'`` keeps them with ``obs['predicted_doublet']``,
    ``'off'`` skips the detection; a sample with ``obsm['spatial']`` is not tested (spots hold several cells by
    design, and Scrublet models droplet doublets), with a note. Genes are kept when detected in ``>= qc.min_cells`` kept cells. The table
    (:func:`qc_table`) has a row per author cell type when ``cell_type_key`` names an ``obs`` column.

    Sets ``obs['n_genes']``, ``obs['total_counts']``, ``obs['pct_counts_mt']`` and, unless ``qc.doublets='off'``,
    ``obs['doublet_score']`` and ``obs['predicted_doublet']``.
    """
    import scanpy as sc

    adata = adata.copy()
    if "counts" not in adata.layers:
        why = diagnose_counts(adata.X)
        if why is not None:
            raise InputError(f"X holds no raw counts ({why}) and there is no counts layer", sample=sample)
        adata.layers["counts"] = adata.X.copy()
    adata.var["mt"] = adata.var_names.str.upper().str.startswith("MT-")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    adata.obs["n_genes"] = adata.obs["n_genes_by_counts"].astype(int)
    th = qc_thresholds(adata.obs, adaptive=qc.adaptive, n_mads=qc.n_mads, n_mads_high=qc.n_mads_high, min_genes=qc.min_genes,
                       min_counts=qc.min_counts, max_pct_mt=qc.max_pct_mt)  # fmt: skip
    flags = _flags(adata.obs, th)
    keep = ~flags.any(axis=1).to_numpy()
    _check_not_empty(keep, flags, adata.obs, th, sample)
    doublets, skip = _doublet_mode(qc.doublets, "spatial" in adata.obsm)
    counts = [sparse.csr_matrix(adata.layers["counts"])[keep]] if doublets != "off" else []
    doublet, note = _doublets(counts, keep, doublets, seed, qc.expected_doublet_rate, adata.obs)
    note = note or skip
    final = keep & ~doublet if doublets == "remove" else keep
    labels = adata.obs[cell_type_key] if cell_type_key and cell_type_key in adata.obs else None
    table = qc_table(adata.obs, flags, doublet, final, sample=sample, labels=labels, th=th, adaptive=qc.adaptive,
                     n_mt_genes=int(adata.var["mt"].sum()))  # fmt: skip
    adata = adata[final].copy()
    gene_cells = np.asarray((adata.layers["counts"] > 0).sum(axis=0)).ravel()
    adata = adata[:, gene_cells >= qc.min_cells].copy()
    _finish_table(table, sample=sample, n_genes_in=len(gene_cells), n_genes_out=adata.n_vars,
                  notes=[_mt_note(int(table["n_mt_genes"].iloc[0])), note])  # fmt: skip
    adata.obs = adata.obs.drop(columns=["n_genes_by_counts"], errors="ignore")
    return adata, table


def _doublet_mode(mode: str, spatial: bool) -> tuple[str, str]:
    """Scrublet models droplet doublets: a spatial sample (spots of several cells, or segmented in-situ cells) is
    not tested. Returns the mode to apply and a note."""
    if spatial and mode != "off":
        return "off", "doublet detection skipped: spatial sample (Scrublet models droplet doublets)"
    return mode, ""


#: Scrublet runs on at most this many cells at a time (QC memory stays bounded; a smaller sample is one batch). The
#: exact kNN over the observed plus 2x simulated cells grows with the square of the batch: per 1,000 cells of the
#: 100,000-cell benchmark 0.62 s at 5,000 against 0.77-0.86 s at 10,000 (docs/performance.md), and Scrublet is
#: meant to run per 10x channel, which holds ~5,000-10,000 cells.
DOUBLET_BATCH = 5_000


def _doublets(blocks, keep, mode, seed, rate, obs, workers: int = 1) -> tuple[np.ndarray, str]:
    """Doublet mask over all cells; ``blocks`` yields the raw counts of the cells in ``keep``, in order, in blocks
    of any size. Scrublet runs per batch of consecutive kept cells (``ceil(n / DOUBLET_BATCH)`` batches of equal
    size), so memory does not grow with the sample; with ``workers`` > 1 that many batches run at once in worker
    processes (joblib's loky: fresh processes, so no fork of a process that used OpenMP), at most ``workers``
    batches held at once. The scores do not depend on ``workers`` (each batch is seeded and single-threaded).
    Adds obs columns unless ``mode='off'``.
    """
    doublet = np.zeros(len(keep), dtype=bool)
    if mode == "off":
        return doublet, ""
    n = int(keep.sum())
    bounds = np.linspace(0, n, int(np.ceil(n / DOUBLET_BATCH)) + 1).astype(int)
    n_batches = len(bounds) - 1
    workers = max(1, min(int(workers), n_batches))
    batches = _batches(blocks, np.diff(bounds))
    if workers == 1:
        results = [detect_doublets(rows, seed=seed, expected_rate=rate) for rows in batches]
    else:
        from joblib import Parallel, delayed

        # batches pickled to the workers (max_nbytes=None: no temporary memmap files)
        run = Parallel(n_jobs=workers, backend="loky", pre_dispatch="n_jobs", max_nbytes=None)
        results = run(delayed(detect_doublets)(rows, seed=seed, expected_rate=rate) for rows in batches)
    scores, preds, notes = (list(x) for x in zip(*results, strict=True)) if results else ([], [], [])
    score = np.concatenate(scores) if scores else np.zeros(0)
    pred = np.concatenate(preds) if preds else np.zeros(0, dtype=bool)
    doublet[np.flatnonzero(keep)[pred]] = True
    full = np.full(len(keep), np.nan)
    full[keep] = score
    obs["doublet_score"] = full
    obs["predicted_doublet"] = doublet
    notes = list(dict.fromkeys(x for x in notes if x))
    if n_batches > 1:
        notes.append(f"doublets called in {n_batches} batches of about {bounds[1]:,} cells")
    return doublet, "; ".join(notes)


def _batches(blocks, sizes):
    """The rows of ``blocks`` (sparse blocks of any size, in order) regrouped into batches of ``sizes`` rows."""
    pending: list = []
    have, i = 0, 0
    for block in blocks:
        pending.append(sparse.csr_matrix(block))
        have += block.shape[0]
        while i < len(sizes) and have >= sizes[i]:
            rows = sparse.vstack(pending).tocsr()
            yield rows[: sizes[i]]
            pending, have = [rows[sizes[i] :]], rows.shape[0] - sizes[i]
            i += 1


def qc_filter_file(
    src: str | Path,
    dst: str | Path,
    *,
    sample: str,
    qc: QcParams = QcParams(),
    cell_type_key: str | None = None,
    seed: int = 0,
    workers: int = 1,
) -> pd.DataFrame:
    """:func:`qc_filter` on an ``.h5ad`` of raw counts in ``X``, read in blocks of rows; returns the QC table.

    Writes the kept cells and genes to ``dst`` (raw counts in ``X``, no layers; ``obs``/``var`` gain the columns
    :func:`qc_filter` adds). One pass gathers the metrics (the adaptive thresholds need the whole sample), a second
    the cells passing them for Scrublet (in batches of at most :data:`DOUBLET_BATCH` cells, so memory stays bounded),
    a third the genes' detection when ``min_cells`` > 0, the last writes. ``workers``: Scrublet batches run at once
    (each holds one batch in memory; results do not depend on it).
    Same cells, genes, metrics and table as :func:`qc_filter` (tested). On error nothing is left at ``dst``.
    """
    obs = ondisk.read_elem(src, "obs")
    var = ondisk.read_elem(src, "var")
    uns = ondisk.read_elem(src, "uns", {})
    obsm = ondisk.read_elem(src, "obsm", {})
    mt = np.asarray(pd.Index(var.index).astype(str).str.upper().str.startswith("MT-"), dtype=bool)
    n_obs, n_vars = len(obs), len(var)
    n_genes = np.zeros(n_obs, dtype=np.int64)
    total = np.zeros(n_obs, dtype=np.float64)
    total_mt = np.zeros(n_obs, dtype=np.float64)
    gene_cells = np.zeros(n_vars, dtype=np.int64)
    gene_total = np.zeros(n_vars, dtype=np.float64)
    for start, block in ondisk.iter_rows(src):
        stop = start + block.shape[0]
        if start == 0:
            why = diagnose_counts(block) if block.nnz else None
            if why is not None:
                raise InputError(f"X holds no raw counts ({why}) and there is no counts layer", sample=sample)
        detected = block.copy()
        detected.data = (detected.data > 0).astype(np.float32)
        n_genes[start:stop] = np.asarray(detected.sum(axis=1)).ravel()
        total[start:stop] = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
        total_mt[start:stop] = np.asarray(block[:, mt].sum(axis=1, dtype=np.float64)).ravel() if mt.any() else 0
        gene_cells += np.asarray(detected.sum(axis=0)).ravel().astype(np.int64)
        gene_total += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        pct_mt = 100.0 * total_mt / total
    metrics = pd.DataFrame(
        {"n_genes": n_genes, "total_counts": total, "total_counts_mt": total_mt, "pct_counts_mt": pct_mt},
        index=obs.index,
    )
    th = qc_thresholds(metrics, adaptive=qc.adaptive, n_mads=qc.n_mads, n_mads_high=qc.n_mads_high, min_genes=qc.min_genes,
                       min_counts=qc.min_counts, max_pct_mt=qc.max_pct_mt)  # fmt: skip
    flags = _flags(metrics, th)
    keep = ~flags.any(axis=1).to_numpy()
    _check_not_empty(keep, flags, metrics, th, sample)
    doublet = np.zeros(n_obs, dtype=bool)
    doublets, note = _doublet_mode(qc.doublets, "spatial" in obsm)
    if doublets != "off":
        kept = (block[keep[start : start + block.shape[0]]] for start, block in ondisk.iter_rows(src))
        doublet, note = _doublets(kept, keep, doublets, seed, qc.expected_doublet_rate, metrics, workers)
    final = keep & ~doublet if doublets == "remove" else keep
    labels = obs[cell_type_key] if cell_type_key and cell_type_key in obs else None
    table = qc_table(metrics, flags, doublet, final, sample=sample, labels=labels, th=th, adaptive=qc.adaptive,
                     n_mt_genes=int(mt.sum()))  # fmt: skip
    gene_cells_kept = np.zeros(n_vars, dtype=np.int64)
    if qc.min_cells > 0:
        for start, block in ondisk.iter_rows(src):
            sub = block[final[start : start + block.shape[0]]]
            gene_cells_kept += np.asarray((sub > 0).sum(axis=0)).ravel().astype(np.int64)
    genes = gene_cells_kept >= qc.min_cells
    var = var.assign(
        mt=np.asarray(mt),
        n_cells_by_counts=gene_cells,
        mean_counts=gene_total / n_obs,
        pct_dropout_by_counts=100.0 * (1 - gene_cells / n_obs),
        total_counts=gene_total,
    )
    writer = ondisk.H5adWriter(dst, var=var.loc[genes], uns=uns)
    try:
        for start, block in ondisk.iter_rows(src):
            writer.append(block[final[start : start + block.shape[0]]][:, genes])
        kept_obs = pd.concat([obs, metrics], axis=1).loc[final]
        writer.set_obs(kept_obs, obsm={k: np.asarray(v)[final] for k, v in obsm.items()})
        writer.close()
    except BaseException:
        writer.abort()
        raise
    _finish_table(table, sample=sample, n_genes_in=n_vars, n_genes_out=int(genes.sum()),
                  notes=[_mt_note(int(mt.sum())), note])  # fmt: skip
    return table
