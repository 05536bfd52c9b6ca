"""Row-chunked reading and writing of ``.h5ad`` count matrices that need not fit in memory.

A sample of a million cells at ~2,000 detected genes per cell holds ~2e9 counts: one CSR copy in memory
(float32 values, int32 indices) is ~16 GB. The streaming steps therefore never hold the whole matrix: they
read it in blocks of rows (:func:`iter_rows`) and write their output block by block (:class:`H5adWriter`),
so their peak memory is set by the block size, not by the sample.

Files are plain ``.h5ad`` (anndata's on-disk format), readable by :func:`anndata.read_h5ad`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from scipy import sparse

#: rows per block: ~40 M stored values at 2,000 genes per cell, ~0.3 GB per block of float32 + int32
CHUNK_ROWS = 20_000
#: HDF5 chunk of the written X's data, indices and indptr (values)
CHUNK_VALUES = 1 << 18


def _matrix(f: h5py.File, key: str):
    """The on-disk matrix ``key`` of an open file as an anndata sparse dataset or an h5py dataset."""
    node = f[key]
    if isinstance(node, h5py.Group):
        kind = node.attrs.get("encoding-type", "")
        if kind != "csr_matrix":
            raise ValueError(f"'{key}' is stored as {kind or 'an unknown group'}, not as a CSR matrix (cells x genes)")
        return ad.io.sparse_dataset(node)
    return node


def shape(path: str | Path, key: str = "X") -> tuple[int, int]:
    """(cells, genes) of the matrix ``key`` of an ``.h5ad`` file, without reading it."""
    with h5py.File(path, "r") as f:
        return tuple(int(n) for n in _matrix(f, key).shape)


_REQUIRED = object()


def read_elem(path: str | Path, key: str, default=_REQUIRED):
    """One element (``obs``, ``var``, ``uns``, ``obsm``, ...) of an ``.h5ad`` file, read into memory.

    ``default`` is returned when the file has no such element (else that is a KeyError).
    """
    with h5py.File(path, "r") as f:
        if key not in f and default is not _REQUIRED:
            return default
        return ad.io.read_elem(f[key])


def iter_rows(
    path: str | Path, *, chunk_rows: int | None = None, key: str = "X"
) -> Iterator[tuple[int, sparse.csr_matrix]]:
    """Blocks of rows of the matrix ``key`` as ``(first_row, CSR float32 block)``, in order.

    A dense matrix is read block by block too and returned sparse. ``chunk_rows`` defaults to :data:`CHUNK_ROWS`.
    """
    chunk_rows = chunk_rows or CHUNK_ROWS
    with h5py.File(path, "r") as f:
        m = _matrix(f, key)
        n = int(m.shape[0])
        for start in range(0, n, chunk_rows):
            block = m[start : min(start + chunk_rows, n)]
            block = sparse.csr_matrix(block, dtype=np.float32)
            block.sort_indices()
            yield start, block


def read_rows(
    path: str | Path, rows: np.ndarray, *, chunk_rows: int | None = None, key: str = "X"
) -> sparse.csr_matrix:
    """The rows ``rows`` (increasing positions) of the matrix ``key``, read in one pass of blocks."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be strictly increasing positions")
    parts = []
    n_genes = shape(path, key)[1]
    for start, block in iter_rows(path, chunk_rows=chunk_rows, key=key):
        lo, hi = np.searchsorted(rows, [start, start + block.shape[0]])
        if hi > lo:
            parts.append(block[rows[lo:hi] - start])
    if not parts:
        return sparse.csr_matrix((0, n_genes), dtype=np.float32)
    return sparse.vstack(parts, format="csr", dtype=np.float32)


class H5adWriter:
    """Write an ``.h5ad`` file whose ``X`` arrives in blocks of rows.

    The genes (``var``) are fixed up front (their annotations may be replaced with :meth:`set_var`); ``obs`` and
    ``obsm`` are given when every row is written (:meth:`set_obs`), so a step may decide which cells to keep as
    it reads them. The file is written under a temporary name and renamed when complete: an error (or a ``with``
    block left by an exception) leaves no partial output.

        with H5adWriter(out, var=var) as w:
            for start, block in iter_rows(src):
                w.append(block[keep])
            w.set_obs(obs)
    """

    def __init__(self, path: str | Path, *, var: pd.DataFrame, uns: dict | None = None):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.n_vars = len(var)
        self.n_obs = 0
        self._obs = None
        self._obsm: dict = {}
        self._file = h5py.File(self.partial, "w")
        # a 64-bit indptr (a million deep cells hold more than 2**31 values) and large chunks: h5py would size
        # the chunks of the empty, growable datasets at 1 and 1,024 values, so millions of them, slow to read
        empty = sparse.csr_matrix((0, self.n_vars), dtype=np.float32)
        ad.io.write_elem(self._file, "X", empty, dataset_kwargs={"indptr_dtype": np.int64, "chunks": (CHUNK_VALUES,)})
        self._x = ad.io.sparse_dataset(self._file["X"])
        self._var = var
        ad.io.write_elem(self._file, "uns", dict(uns or {}))

    def append(self, block: sparse.spmatrix) -> None:
        """Add rows (CSR, ``n_vars`` columns) after those written so far."""
        block = sparse.csr_matrix(block, dtype=np.float32)
        if block.shape[1] != self.n_vars:
            raise ValueError(f"block has {block.shape[1]} columns, the file has {self.n_vars} genes")
        if block.shape[0]:
            self._x.append(block)
            self.n_obs += block.shape[0]

    def set_var(self, var: pd.DataFrame) -> None:
        """Replace the genes' annotations (same genes, in order), e.g. with statistics gathered while writing."""
        if len(var) != self.n_vars:
            raise ValueError(f"var has {len(var)} rows, the file has {self.n_vars} genes")
        self._var = var

    def set_obs(self, obs: pd.DataFrame, obsm: dict | None = None) -> None:
        """The cells' annotations (one row per written row, in order) and per-cell arrays."""
        if len(obs) != self.n_obs:
            raise ValueError(f"obs has {len(obs)} rows, {self.n_obs} rows of X were written")
        self._obs, self._obsm = obs, dict(obsm or {})

    def close(self) -> None:
        """Finish the file and move it to its name (needs :meth:`set_obs` first)."""
        if self._obs is None:
            raise ValueError("set_obs() was not called: the file would have no cell annotations")
        f = self._file
        meta = ad.AnnData(obs=self._obs, var=self._var)
        meta.strings_to_categoricals()  # as anndata's own writer does
        ad.io.write_elem(f, "obs", meta.obs)
        ad.io.write_elem(f, "var", meta.var)
        ad.io.write_elem(f, "obsm", {k: np.asarray(v) for k, v in self._obsm.items()})
        for key in ("layers", "obsp", "varm", "varp"):
            ad.io.write_elem(f, key, {})
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        f.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self._file.close()
        finally:
            self.partial.unlink(missing_ok=True)

    def __enter__(self) -> H5adWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_h5ad(path: str | Path, rows: np.ndarray | None = None) -> ad.AnnData:
    """An ``.h5ad`` file in memory (``X``, ``obs``, ``var``, ``obsm``, ``uns``), or only the cells ``rows``.

    ``rows``: increasing positions; their ``X`` rows are read in one pass of blocks (:func:`read_rows`), so only
    those rows are ever held. ``layers``, ``obsp`` and ``raw`` are not read.
    """
    with h5py.File(path, "r") as f:
        obs = ad.io.read_elem(f["obs"])
        var = ad.io.read_elem(f["var"])
        uns = ad.io.read_elem(f["uns"]) if "uns" in f else {}
        obsm = ad.io.read_elem(f["obsm"]) if "obsm" in f else {}
    if rows is None:
        return ad.read_h5ad(path)
    rows = np.asarray(rows, dtype=np.int64)
    return ad.AnnData(
        read_rows(path, rows),
        obs=obs.iloc[rows],
        var=var,
        obsm={k: np.asarray(v)[rows] for k, v in obsm.items()},
        uns=uns,
    )
