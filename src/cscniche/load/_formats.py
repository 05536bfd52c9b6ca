"""Readers for the file layouts public data arrive in.

- 10x mtx folders whose files carry a GEO prefix (``GSE125449_Set1_matrix.mtx.gz``) or the legacy
  ``genes.tsv`` name, gzipped or not;
- delimited text matrices (csv/tsv, gzipped or not), cells x genes or genes x cells, read in
  chunks into a sparse matrix (a 70k-cell GEO count table is 3.5 GB as text);
- archives (GEO ``_RAW.tar`` and tarballs/zips of one sample), extracted safely;
- per-cell metadata tables joined onto ``obs``, and a row subset by a pandas query.
"""

from __future__ import annotations

import logging
import re
import tarfile
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import io as spio
from scipy import sparse

from .._tables import open_maybe_gzip

log = logging.getLogger(__name__)

#: genes detected in nearly every human scRNA-seq matrix: the axis holding more of them holds the genes
COMMON_GENES = frozenset(
    "ACTB GAPDH B2M MALAT1 TMSB4X TMSB10 EEF1A1 FTL FTH1 TPT1 MT-CO1 MT-CO2 MT-CO3 MT-ND1 MT-ND4 MT-CYB "
    "RPL3 RPL4 RPL7 RPL10 RPL13 RPL13A RPL19 RPL21 RPL32 RPL34 RPL41 RPLP0 RPLP1 RPS2 RPS3 RPS6 RPS8 RPS12 "
    "RPS14 RPS18 RPS19 RPS27 RPS27A HLA-A HLA-B HLA-C MYL6 PFN1 CFL1 UBC UBB ACTG1 VIM S100A6 LGALS1 "
    "SRGN CD74 HSP90AA1 HSPA8 NACA EIF1 PTMA HNRNPA1 NPM1 SERF2 OAZ1 COX4I1 ATP5F1E UQCRH".split()
)


def _find(folder: Path, stems: tuple[str, ...]) -> Path | None:
    hits = []
    for p in sorted(folder.iterdir()):
        name = p.name.lower()
        for stem in stems:
            if re.search(rf"(^|[_.-]){re.escape(stem)}(\.gz)?$", name):
                hits.append(p)
    if len(hits) > 1:
        raise ValueError(f"{folder} holds several candidate {stems[0]} files: {', '.join(h.name for h in hits)}")
    return hits[0] if hits else None


def read_mtx_dir(folder: str | Path) -> ad.AnnData:
    """Read a 10x mtx folder: ``[prefix]matrix.mtx[.gz]``, ``[prefix]features.tsv`` or ``genes.tsv`` and
    ``[prefix]barcodes.tsv`` (each gzipped or not). Gene symbols (second column when there is one)
    become ``var_names``; the first column is kept as ``var['gene_ids']``.
    """
    folder = Path(folder)
    mtx = _find(folder, ("matrix.mtx",))
    feats = _find(folder, ("features.tsv",)) or _find(folder, ("genes.tsv",))
    bcs = _find(folder, ("barcodes.tsv",))
    missing = [
        n for n, p in (("matrix.mtx", mtx), ("features.tsv/genes.tsv", feats), ("barcodes.tsv", bcs)) if p is None
    ]
    if missing:
        raise ValueError(f"10x folder {folder} lacks {', '.join(missing)} (gzipped or not, any prefix)")
    with open_maybe_gzip(mtx, "rb") as f:
        m = sparse.csr_matrix(spio.mmread(f).T, dtype=np.float32)
    genes = pd.read_csv(feats, sep="\t", header=None, dtype=str)
    barcodes = pd.read_csv(bcs, sep="\t", header=None, dtype=str)[0].to_numpy()
    if m.shape != (len(barcodes), len(genes)):
        raise ValueError(
            f"10x folder {folder}: matrix is {m.shape[1]} genes x {m.shape[0]} cells but there are "
            f"{len(genes)} genes and {len(barcodes)} barcodes"
        )
    symbols = genes[1] if genes.shape[1] > 1 else genes[0]
    var = pd.DataFrame({"gene_ids": genes[0].to_numpy()}, index=symbols.astype(str).to_numpy())
    if genes.shape[1] > 2:
        var["feature_types"] = genes[2].to_numpy()
        keep = (var["feature_types"] == "Gene Expression").to_numpy()
        if keep.any() and not keep.all():
            m, var = m[:, keep], var[keep]
    return ad.AnnData(m, obs=pd.DataFrame(index=barcodes), var=var)


def _score_gene_axis(labels, known: set[str]) -> float:
    labels = [str(x) for x in labels[:5000]]
    return float(np.mean([x in known for x in labels])) if labels else 0.0


def read_text_matrix(
    path: str | Path,
    *,
    orientation: str = "auto",
    known_genes: set[str] | None = None,
    chunksize: int = 2000,
) -> ad.AnnData:
    """Read a delimited count matrix (first column = row names, header = column names) into sparse AnnData.

    ``orientation``: ``cells_x_genes``, ``genes_x_cells`` or ``auto`` (the axis on which more names
    are ``known_genes`` holds the genes; ties read rows as cells). Rows are read ``chunksize`` at a
    time and stored sparse, so a large GEO table never exists densely in memory.
    """
    path = Path(path)
    name = path.name.lower()
    sep = "\t" if re.search(r"\.(tsv|txt)(\.gz)?$", name) else ","
    with open_maybe_gzip(path) as f:
        header = f.readline().rstrip("\n").rstrip("\r").split(sep)
    blocks, rows = [], []
    for chunk in pd.read_csv(path, sep=sep, index_col=0, chunksize=chunksize, dtype={0: str}):
        rows.extend(chunk.index.astype(str))
        blocks.append(sparse.csr_matrix(chunk.to_numpy(dtype=np.float32)))
    m = sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((0, 0), dtype=np.float32)
    cols = [c.strip('"') for c in header[-m.shape[1] :]] if m.shape[1] else []
    if orientation == "auto":
        known = known_genes or set()
        orientation = (
            "genes_x_cells" if _score_gene_axis(rows, known) > _score_gene_axis(cols, known) else "cells_x_genes"
        )
        log.info("%s: read as %s", path.name, orientation)
    if orientation == "genes_x_cells":
        return ad.AnnData(m.T.tocsr(), obs=pd.DataFrame(index=cols), var=pd.DataFrame(index=rows))
    if orientation == "cells_x_genes":
        return ad.AnnData(m, obs=pd.DataFrame(index=rows), var=pd.DataFrame(index=cols))
    raise ValueError(f"orientation must be auto, cells_x_genes or genes_x_cells, not '{orientation}'")


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Extract a .tar, .tar.gz/.tgz or .zip into ``dest``, refusing members that would land outside it.

    Nested per-sample gzipped files (GEO ``_RAW.tar``) are left gzipped; the readers read them as they are.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()

    def _safe(name: str) -> None:
        target = (dest / name).resolve()
        if root != target and root not in target.parents:
            raise ValueError(f"archive {archive.name} has a member '{name}' outside its folder; refused")

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for n in z.namelist():
                _safe(n)
            z.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for mem in t.getmembers():
                _safe(mem.name)
                if mem.issym() or mem.islnk():
                    raise ValueError(f"archive {archive.name} has a link member '{mem.name}'; refused")
            t.extractall(dest, filter="data")
    else:
        raise ValueError(f"{archive.name} is neither a tar nor a zip archive")
    # a single top-level folder is the sample folder
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def join_obs(adata: ad.AnnData, table: str | Path, *, index_column: str | None = None) -> int:
    """Join a per-cell metadata table (csv/tsv, gzipped or not) onto ``adata.obs`` by cell ID.

    ``index_column`` names the cell-ID column (default: the first column). Columns already in
    ``obs`` are not overwritten. Returns the number of cells that found a row; raises when none did.
    """
    table = Path(table)
    sep = "," if re.search(r"\.csv(\.gz)?$", table.name.lower()) else "\t"
    meta = pd.read_csv(table, sep=sep, dtype=str)
    key = index_column or meta.columns[0]
    if key not in meta.columns:
        raise ValueError(f"metadata table {table.name} has no column '{key}' (columns: {', '.join(meta.columns[:15])})")
    meta = meta.drop_duplicates(key).set_index(key)
    meta.index = meta.index.astype(str)
    hit = adata.obs_names.isin(meta.index)
    if not hit.any():
        raise ValueError(
            f"no cell ID of the data (e.g. {adata.obs_names[0]}) is in column '{key}' of {table.name} "
            f"(e.g. {meta.index[0]}); name the ID column in the sample sheet"
        )
    new = [c for c in meta.columns if c not in adata.obs.columns]
    adata.obs = adata.obs.join(meta[new], how="left")
    return int(hit.sum())


def subset_cells(adata: ad.AnnData, query: str) -> ad.AnnData:
    """Keep the cells whose ``obs`` rows satisfy a pandas ``query`` (e.g. ``patient == 'HCC01' and site == 'Tumor'``)."""
    keep = adata.obs.eval(query)
    keep = np.asarray(keep, dtype=bool)
    if not keep.any():
        raise ValueError(f"the subset '{query}' keeps no cell")
    return adata[keep].copy()
