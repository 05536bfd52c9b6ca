"""Malignant cells by inferred copy number: gene positions, infercnvpy, a per-sample threshold, agreement.

Rule (also in the README): a cell is **malignant** when

1. it is a candidate (:func:`cscniche.preprocess.candidates.choose_candidates`): its lineage compartment is in
   ``candidate_compartments`` (default ``malignant`` and ``candidate``: author labels such as "Cancer
   Epithelial", or parenchymal labels such as "Epithelial", "Hepatocytes", "Ductal" that the anchored compartment
   rules call ``candidate``); when no label of the sample names a candidate, the CNV-high cells that are
   neither immune nor stromal become the candidates if they form a population (with ``candidate_warning`` in
   the table and the summary). With ``candidate_policy='malignant_first'`` (default) a sample whose labels name
   cancer cells (compartment ``malignant``, e.g. "Cancer clone A") keeps only those as candidates: the authors
   have told tumour from normal epithelium, and their "Ductal"/"Epithelial" cells are the normal tissue
   (``'all'``: both), and
2. its CNV score is above the sample's threshold.

The CNV profile of each cell is inferred with :func:`infercnvpy.tl.infercnv` on the log-normalised
expression, ordered by genomic position, against the **reference cells** (compartments ``immune`` and
``stromal``; each cell type is its own reference category). The reference cells are split at random (seeded)
into a *baseline* half, used by infercnv as the normal expression, and a *held-out* half, scored like every
other cell. A cell's CNV score is the mean squared CNV value over the genome windows, averaged over the cell
and its expression kNN neighbours (``obsp['distances']``; smoothing reduces per-cell noise); the threshold is
the ``quantile`` (default 0.99) of the held-out reference cells' scores, so about 1 % of normal cells would
pass it. The threshold is learnt per sample.

The final call has precision 1 against the labels by construction (malignant = candidate and CNV-high), so the
table quotes the CNV-only agreement (``cnv_only_precision``/``recall``/``f1``: CNV-high cells, whatever their
label, against the label candidates) as the measure of the CNV step.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._params import CnvParams
from .._resources import resolve
from .._tables import open_maybe_gzip

log = logging.getLogger(__name__)

POSITION_COLUMNS = ("chromosome", "start", "end")
#: the gene-position table shipped with the workflow (hg38, Bioconductor org.Hs.eg.db 3.16)
DEFAULT_POSITIONS = "cscniche:reference/gene_positions_hg38.tsv.gz"


def read_gene_positions(path: str | Path) -> pd.DataFrame:
    """Gene positions indexed by symbol: columns chromosome (``chr1``...), start, end.

    Accepts a GTF (``.gtf``/``.gtf.gz``; ``gene`` features, ``gene_name`` attribute) or a tab-separated table
    with columns ``symbol``, ``chromosome``, ``start``, ``end`` (other columns ignored; the shipped
    ``cscniche:reference/gene_positions_hg38.tsv.gz`` and ``human_genes_hg38.tsv.gz`` have them).
    Chromosome names get a ``chr`` prefix when they lack one; symbols present twice keep their first row.
    """
    path = resolve(path)
    if not path.exists():
        raise ValueError(f"gene-position file '{path}' not found (config key cnv.gene_positions)")
    name = path.name.lower()
    if name.endswith((".gtf", ".gtf.gz")):
        rows = []
        pat = re.compile(r'gene_name "([^"]+)"')
        with open_maybe_gzip(path) as fh:
            for line in fh:
                if line.startswith("#"):
                    continue
                f = line.rstrip("\n").split("\t")
                if len(f) < 9 or f[2] != "gene":
                    continue
                m = pat.search(f[8])
                if m:
                    rows.append((m.group(1), f[0], int(f[3]), int(f[4])))
        df = pd.DataFrame(rows, columns=["symbol", *POSITION_COLUMNS])
    else:
        df = pd.read_csv(path, sep="\t", dtype={"chromosome": str}, low_memory=False)
        missing = {"symbol", *POSITION_COLUMNS} - set(df.columns)
        if missing:
            raise ValueError(f"gene-position table '{path}' lacks the columns {sorted(missing)}")
        df = df[["symbol", *POSITION_COLUMNS]].dropna()
    if df.empty:
        raise ValueError(f"gene-position file '{path}' has no gene with a position")
    chrom = df["chromosome"].astype(str)
    df["chromosome"] = np.where(chrom.str.startswith("chr"), chrom, "chr" + chrom)
    df["start"] = df["start"].astype(np.int64)
    df["end"] = df["end"].astype(np.int64)
    return df.drop_duplicates("symbol").set_index("symbol")


def annotate_positions(
    adata: ad.AnnData, positions: pd.DataFrame | None, *, min_genes: int = 500, sample: str | None = None
) -> int:
    """Write ``var['chromosome'|'start'|'end']`` from ``positions`` (genes already positioned keep theirs).

    Returns the number of autosomal genes with a position; raises ValueError when fewer than ``min_genes``
    (CNV inference over too few genes is noise).
    """
    var = adata.var
    have = all(c in var.columns for c in POSITION_COLUMNS)
    chrom = var["chromosome"].astype(object) if have else pd.Series(None, index=var.index, dtype=object)
    start = var["start"] if have else pd.Series(np.nan, index=var.index)
    end = var["end"] if have else pd.Series(np.nan, index=var.index)
    if positions is not None:
        todo = chrom.isna().to_numpy() & var.index.isin(positions.index)
        hit = positions.reindex(var.index[todo])
        chrom[todo] = hit["chromosome"].to_numpy()
        start = start.astype(np.float64)
        end = end.astype(np.float64)
        start[todo] = hit["start"].to_numpy()
        end[todo] = hit["end"].to_numpy()
    adata.var["chromosome"] = chrom.to_numpy()
    adata.var["start"] = pd.to_numeric(start).to_numpy()
    adata.var["end"] = pd.to_numeric(end).to_numpy()
    autosomal = chrom.notna() & ~chrom.isin(["chrX", "chrY", "chrM", "chrMT"])
    n = int(autosomal.sum())
    if n < min_genes:
        who = f"sample '{sample}': " if sample else ""
        raise ValueError(
            f"{who}only {n} of {adata.n_vars} genes have an autosomal genomic position (minimum "
            f"{min_genes}); give a GTF or gene table matching the gene symbols in cnv.gene_positions, "
            "or lower cnv.min_genes_with_position"
        )
    return n


def infer_cnv(
    adata: ad.AnnData,
    reference: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    window_size: int = 100,
    step: int = 10,
    dynamic_threshold: float | None = 1.5,
    chunk_cells: int = 5000,
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """infercnvpy on ``X`` (log-normalised) against the ``reference`` cells (bool mask).

    Returns X_cnv (cells x genome windows, CSR float32) and each cell's mean squared CNV over the windows
    (from the float64 values).

    ``groups`` (labels per cell) makes each reference group its own category (infercnvpy then treats a
    gene as unchanged while it stays within the range of the reference groups' means).

    infercnvpy densifies blocks of ``chunk_cells`` cells (its ``chunksize``) and sets each block's noise threshold
    from that block; called on the whole sample it also copies every block up front and stacks every result,
    which took 15 GB for a 100,000-cell sample of ~2,200 genes per cell. So it is called here block by block,
    with the reference means computed once over the whole sample as infercnvpy computes them: the same blocks,
    the same result (tested), and only one block in flight. The result is kept sparse (float32) as infercnvpy
    returns it.

    infercnvpy hands each block to a process pool (tqdm's ``process_map``) even with ``n_jobs=1``: one fork of
    this process per block, the block and its result pickled across, and a memory reading that counts the
    parent's pages twice (Snakemake's benchmark sums the process tree: ~10.5 GB for cnv on 100,000 cells).
    :func:`_in_process` runs the same function on the same blocks in this process instead.
    """
    import infercnvpy as cnv

    labels = np.asarray(groups if groups is not None else np.full(adata.n_obs, "reference"), dtype=object).astype(str)
    cats = sorted(set(labels[reference]))
    X = adata.X
    ref_means = np.vstack([np.asarray(np.mean(X[reference & (labels == c), :], axis=0)) for c in cats])
    parts, msq = [], []
    with _in_process():
        for start in range(0, adata.n_obs, chunk_cells):
            block = ad.AnnData(X[start : start + chunk_cells], var=adata.var)
            _, res, _ = cnv.tl.infercnv(
                block,
                reference=ref_means,
                window_size=window_size,
                step=step,
                dynamic_threshold=dynamic_threshold,
                chunksize=chunk_cells,
                n_jobs=1,
                inplace=False,
            )
            res = sparse.csr_matrix(res, dtype=np.float64)
            msq.append(np.asarray(res.multiply(res).sum(axis=1)).ravel() / res.shape[1])
            parts.append(res.astype(np.float32))
    return sparse.vstack(parts, format="csr"), np.concatenate(msq)


@contextmanager
def _in_process():
    """infercnvpy's ``process_map`` replaced by a plain map in this process, while the blocks run.

    infercnvpy 0.6 calls ``process_map(_infercnv_chunk, blocks, ...)`` and unpacks the list it returns; the
    replacement returns the same list from the same calls (a test compares against infercnvpy's own call).
    """
    import infercnvpy.tl._infercnv as impl

    def serial(fn, *iterables, **_tqdm_kwargs):
        return list(map(fn, *iterables))

    original = impl.process_map
    impl.process_map = serial
    try:
        yield
    finally:
        impl.process_map = original


def smooth_over_graph(values: np.ndarray, graph: sparse.spmatrix | None) -> np.ndarray:
    """Mean of each cell's value and its graph neighbours' values (the graph's nonzero pattern)."""
    if graph is None:
        return np.asarray(values, dtype=np.float64)
    g = sparse.csr_matrix(graph, copy=True)
    g.data[:] = 1.0
    g = g + sparse.identity(g.shape[0], format="csr")
    g.data[:] = 1.0
    deg = np.asarray(g.sum(axis=1)).ravel()
    return np.asarray(g @ np.asarray(values, dtype=np.float64)).ravel() / deg


def call_malignant(
    adata: ad.AnnData,
    *,
    sample: str,
    positions: pd.DataFrame | None = None,
    params: CnvParams = CnvParams(),
    seed: int = 0,
) -> pd.DataFrame:
    """CNV-confirmed malignant cells, in place; returns the one-row agreement table.

    ``params``: the ``cnv`` config section (compartments, threshold quantile, window, smoothing, ...);
    ``params.enabled`` and ``params.gene_positions`` are read by the step (:func:`cscniche.stemness.cnv`).

    Writes ``obs['cnv_score']``, ``obs['cnv_high']`` (score above the threshold, whatever the lineage),
    ``obs['cnv_reference']`` (baseline | held_out | no), ``obs['malignant']`` (candidate compartment and
    ``cnv_high``), ``obsm['X_cnv']`` and ``uns['cscniche']['cnv']``. With fewer than ``min_reference_cells``
    reference cells the CNV step cannot be calibrated: the malignant set falls back to the candidate
    compartment, with a warning and ``rule = compartment only`` in the table. Targeted panels: under
    ``params.min_genes_for_calls`` positioned genes the CNV score is computed but the labelled candidates are
    malignant; under ``params.min_genes_with_position`` with most genes positioned (a small panel, not a
    naming mismatch) no CNV is inferred; both write ``cnv_warning`` in the table.
    """
    candidate_compartments, reference_compartments = params.candidate_compartments, params.reference_compartments
    quantile, min_reference_cells = params.quantile, params.min_reference_cells
    window_size, step, smooth = params.window_size, params.step, params.smooth
    info = adata.uns.setdefault("cscniche", {})
    from ..preprocess.candidates import choose_candidates

    comp = adata.obs["compartment"].astype(str).to_numpy()
    if params.candidate_policy == "malignant_first" and (comp == "malignant").any():
        # the authors named the cancer cells: their parenchymal/epithelial labels are the normal tissue
        candidate_compartments = [c for c in candidate_compartments if c != "candidate"]
    elif params.candidate_policy not in ("malignant_first", "all"):
        raise ValueError(f"cnv.candidate_policy must be 'malignant_first' or 'all', not {params.candidate_policy!r}")
    by_label = np.isin(comp, list(candidate_compartments))
    candidate = by_label
    ref = np.isin(comp, list(reference_compartments))
    n_any = annotate_positions(adata, positions, min_genes=0, sample=sample)
    # a small panel (most of its genes positioned, but fewer than min_genes_with_position: MERFISH 479 genes)
    # is not a gene-naming mismatch: no CNV at all, the labelled candidates are malignant (warned below)
    small_panel = n_any < params.min_genes_with_position and n_any >= 0.5 * adata.n_vars
    n_pos = (
        n_any
        if small_panel
        else annotate_positions(adata, positions, min_genes=params.min_genes_with_position, sample=sample)
    )
    row = {
        "sample": sample,
        "n_cells": adata.n_obs,
        "n_genes_with_position": n_pos,
        "n_reference": int(ref.sum()),
        "n_candidate": int(candidate.sum()),
    }
    if small_panel or ref.sum() < min_reference_cells:  # no CNV: the labelled candidates are malignant
        if small_panel:
            row["cnv_warning"] = (
                f"sample {sample}: only {n_pos} genes with a position (< cnv.min_genes_with_position = "
                f"{params.min_genes_with_position}, a targeted panel): no CNV inferred, malignant = the labelled "
                "candidate cells, not CNV-confirmed"
            )
            log.warning("%s", row["cnv_warning"])
            rule = "compartment only (panel too small for CNV)"
        else:
            log.warning(
                "sample %s: only %d reference (%s) cells; CNV cannot be calibrated, malignant = compartment %s",
                sample,
                ref.sum(),
                "/".join(reference_compartments),
                "/".join(candidate_compartments),
            )
            rule = "compartment only (too few reference cells)"
        adata.obs["cnv_score"] = np.nan
        adata.obs["cnv_high"] = False
        adata.obs["cnv_reference"] = np.where(ref, "baseline", "no")
        chosen = choose_candidates(
            comp, None, candidate_compartments=candidate_compartments,
            reference_compartments=reference_compartments, sample=sample,
        )  # fmt: skip
        candidate = chosen.candidate
        malignant = candidate
        row.update(threshold=np.nan, rule=rule)
    else:
        rng = np.random.default_rng(seed)
        ref_idx = np.flatnonzero(ref)
        types = adata.obs["cell_type"].astype(str).to_numpy()
        baseline = np.zeros(adata.n_obs, dtype=bool)
        # split each reference cell type in halves so every type is in the baseline
        for t in np.unique(types[ref_idx]):
            idx = rng.permutation(ref_idx[types[ref_idx] == t])
            baseline[idx[: max(1, (idx.size + 1) // 2)]] = True
        held_out = ref & ~baseline
        x_cnv, raw = infer_cnv(adata, baseline, groups=types, window_size=window_size, step=step)
        graph = adata.obsp["distances"] if smooth and "distances" in adata.obsp else None
        score = smooth_over_graph(raw, graph)
        null = score[held_out] if held_out.sum() >= 5 else score[baseline]
        thr = float(np.quantile(null, quantile))
        high = score > thr
        chosen = choose_candidates(
            comp, score, threshold=thr, candidate_compartments=candidate_compartments,
            reference_compartments=reference_compartments, sample=sample,
        )  # fmt: skip
        candidate = chosen.candidate
        malignant = candidate & high
        if n_pos < params.min_genes_for_calls and chosen.rule == "labels":
            # a targeted panel: too few genes per chromosome arm for the running window to see arm-level
            # changes; the CNV score is kept and reported (cnv_only_*) but the author labels decide
            malignant = candidate.copy()
            panel_note = (
                f"sample {sample}: only {n_pos} genes with a position (< cnv.min_genes_for_calls = "
                f"{params.min_genes_for_calls}): CNV cannot resolve chromosome arms, so malignant = the "
                "labelled candidate cells, not CNV-confirmed"
            )
            log.warning("%s", panel_note)
            row["cnv_warning"] = panel_note
        adata.obs["cnv_score"] = score
        adata.obs["cnv_high"] = high
        adata.obs["cnv_reference"] = np.where(baseline, "baseline", np.where(held_out, "held_out", "no"))
        adata.obsm["X_cnv"] = x_cnv
        row.update(
            threshold=thr,
            rule=f"compartment in {'/'.join(candidate_compartments)} and cnv_score > quantile {quantile:g} "
            "of held-out reference cells"
            if "cnv_warning" not in row
            else f"compartment in {'/'.join(candidate_compartments)} (CNV reported, not used: too few genes)",
            n_cnv_high=int(high.sum()),
            held_out_pass_fraction=float(high[held_out].mean()) if held_out.any() else np.nan,
        )
    adata.obs["malignant"] = malignant
    row["n_candidate"] = int(candidate.sum())
    row["candidate_rule"] = chosen.rule
    row["candidate_warning"] = chosen.warning or ""
    if chosen.warning:
        log.warning("%s", chosen.warning)
    row["n_malignant"] = int(malignant.sum())
    row["n_candidate_rejected"] = int((candidate & ~malignant).sum())
    src = adata.obs["cell_type_source"].astype(str).iloc[0] if "cell_type_source" in adata.obs and adata.n_obs else ""
    row["labels"] = src
    author = by_label  # the lineage labels' own malignant/candidate set (author or marker-based)
    row.update(_agreement(malignant, author, prefix=""))
    if "cnv_score" in adata.obs and adata.obs["cnv_high"].any():
        row.update(_agreement(adata.obs["cnv_high"].to_numpy(dtype=bool), author, prefix="cnv_only_"))
    table = pd.DataFrame([row])
    info["cnv"] = table
    log.info(
        "sample %s: %d of %d candidate cells malignant by CNV (threshold %.4g)",
        sample,
        row["n_malignant"],
        row["n_candidate"],
        row.get("threshold", np.nan),
    )
    return table


def _agreement(call: np.ndarray, label: np.ndarray, *, prefix: str) -> dict:
    """Precision, recall, F1 and accuracy of ``call`` against ``label`` (both bool)."""
    tp = int((call & label).sum())
    fp = int((call & ~label).sum())
    fn = int((~call & label).sum())
    prec = tp / (tp + fp) if tp + fp else np.nan
    rec = tp / (tp + fn) if tp + fn else np.nan
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else np.nan
    return {
        f"{prefix}tp": tp,
        f"{prefix}fp": fp,
        f"{prefix}fn": fn,
        f"{prefix}precision": prec,
        f"{prefix}recall": rec,
        f"{prefix}f1": f1,
        f"{prefix}accuracy": float((call == label).mean()) if call.size else np.nan,
    }
