"""Load one sample into an AnnData with raw counts.

The contract: :func:`load_sample` returns an AnnData whose ``X`` and ``layers['counts']``
hold raw integer counts (CSR, float32), whose ``var_names`` are unique gene symbols, and
whose ``uns['cscniche']['load']`` records where the counts came from.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from scipy import sparse

from .._errors import InputError
from . import _ondisk as ondisk
from ._formats import COMMON_GENES, join_obs, read_mtx_dir, read_text_matrix, subset_cells
from ._genes import harmonise, is_mouse, read_gene_map
from ._sources import MANIFEST, manifest_target

log = logging.getLogger(__name__)

FORMATS = ("h5ad", "10x_h5", "10x_mtx", "loom", "csv")
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "feature_name", "gene_name", "symbol", "gene")
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_ENSEMBL_HUMAN = re.compile(r"^ENSG\d{6,}(\.\d+)?$")
#: mouse/rat-style symbols (Actb, Cd44, Gm12345), for examples in messages (detection: genes.is_mouse)
_MOUSE_CASE = re.compile(r"^[A-Z][a-z][a-z0-9-]*$")
#: values above this are not log1p-normalised counts (log1p(1e13) ~ 30)
LOG_MAX = 30.0


def guess_format(path: str | Path) -> str:
    """Guess the input format from a path name (a directory is a 10x mtx folder)."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        return "10x_mtx"
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5"):
        return "10x_h5"
    if name.endswith(".loom"):
        return "loom"
    if re.search(r"\.(csv|tsv|txt)(\.gz)?$", name):
        return "csv"
    raise InputError(
        f"cannot guess the format from the name; set the sample sheet column 'format' to one of {', '.join(FORMATS)}",
        path=str(path),
    )


def _read(path: Path, fmt: str) -> ad.AnnData:
    import scanpy as sc

    if fmt == "h5ad":
        return ad.read_h5ad(path)
    if fmt == "10x_h5":
        return sc.read_10x_h5(path)
    if fmt == "10x_mtx":
        return read_mtx_dir(path)  # GEO-prefixed and legacy genes.tsv layouts too
    if fmt == "loom":
        return ad.read_loom(path)
    if fmt == "csv":
        return read_text_matrix(path, orientation="auto", known_genes=COMMON_GENES)
    raise InputError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}", path=str(path))


def _sample_values(m) -> np.ndarray:
    """Up to one million stored values of a matrix, for cheap checks."""
    vals = m.data if sparse.issparse(m) else np.asarray(m).ravel()
    if vals.size > 1_000_000:
        idx = np.random.default_rng(0).choice(vals.size, 1_000_000, replace=False)
        vals = vals[idx]
    return np.asarray(vals, dtype=np.float64)


def diagnose_counts(m) -> str | None:
    """Return ``None`` when ``m`` looks like raw counts, else why not (a short phrase)."""
    vals = _sample_values(m)
    if vals.size == 0:
        return "the matrix has no non-zero value"
    if not np.all(np.isfinite(vals)):
        return "the matrix has NaN or infinite values"
    if np.any(vals < 0):
        return "the matrix has negative values"
    if not np.allclose(vals, np.round(vals), atol=1e-6):
        if vals.max() <= LOG_MAX:
            return f"the values look log-normalised (non-integers, max {vals.max():.2f})"
        return "the values are not integers (normalised, TPM or corrected data?)"
    return None


def find_counts(adata: ad.AnnData) -> tuple[str, ad.AnnData]:
    """Find raw counts in ``layers['counts']``, ``raw`` or ``X``; return (where, AnnData of counts).

    Raises
    ------
    ValueError
        When none of them hold raw counts; the message says what ``X`` looks like.
    """
    candidates = []
    if "counts" in adata.layers:
        candidates.append(("layers['counts']", adata.layers["counts"], adata.var))
    if adata.raw is not None:
        candidates.append(("raw.X", adata.raw.X, adata.raw.var))
    candidates.append(("X", adata.X, adata.var))
    reasons = []
    for where, m, var in candidates:
        if m is None:
            continue
        why = diagnose_counts(m)
        if why is None:
            counts = ad.AnnData(
                X=sparse.csr_matrix(m, dtype=np.float32),
                obs=adata.obs.copy(),
                var=var.copy(),
                obsm=dict(adata.obsm),
                uns=dict(adata.uns),
            )
            return where, counts
        reasons.append(f"{where}: {why}")
    raise ValueError("no raw counts found (" + "; ".join(reasons) + "); give the unnormalised integer count matrix")


def _symbols(adata: ad.AnnData) -> tuple[pd.Index, str]:
    names = adata.var_names.astype(str)
    ens = np.mean([bool(_ENSEMBL.match(n)) for n in names[:2000]]) if len(names) else 0.0
    if ens > 0.5:
        for col in SYMBOL_COLUMNS:
            if col in adata.var.columns:
                sym = adata.var[col].astype(str)
                ok = sym.notna() & (sym != "") & (sym != "nan")
                return pd.Index(np.where(ok, sym, names)), f"var['{col}']"
        raise ValueError(
            "gene identifiers are Ensembl IDs and no gene-symbol column was found "
            f"(looked for var columns {', '.join(SYMBOL_COLUMNS)}); add a column of HGNC symbols named gene_symbols"
        )
    return pd.Index(names), "var_names"


def check_species(names) -> None:
    """Raise ValueError when gene names are not human: Ensembl IDs of another species or mouse-cased symbols.

    Only human data are supported (the gene sets, markers and checkpoint tables are HGNC symbols).
    Names are taken as non-human Ensembl IDs when most are ``ENS<species>G...`` rather than ``ENSG...``,
    and as mouse/rat symbols when most names with letters are cased like ``Actb`` rather than ``ACTB``.
    """
    names = pd.Index(names).astype(str)[:5000]
    ens = [n for n in names if _ENSEMBL.match(n)]
    if len(ens) > len(names) / 2 and np.mean([bool(_ENSEMBL_HUMAN.match(n)) for n in ens]) < 0.5:
        prefix = re.match(r"^ENS[A-Z]*G", ens[0]).group(0)
        raise ValueError(
            f"gene IDs are non-human Ensembl IDs ({prefix}..., e.g. {ens[0]}); only human data (ENSG IDs or "
            "HGNC symbols) are supported: map the genes to human orthologues first"
        )
    if is_mouse(names):
        mouse = [n for n in names if _MOUSE_CASE.match(n)]
        raise ValueError(
            f"gene symbols look like mouse/rat symbols ({len(mouse)} of {len(names)} cased like "
            f"{', '.join(mouse[:3])}); only human HGNC symbols (ACTB, CD44) are supported: map the genes to "
            "human orthologues first"
        )


def _spatial(adata: ad.AnnData, spatial_key: str | None) -> np.ndarray | None:
    """The cells' coordinates from ``obsm[spatial_key]`` (default ``obsm['spatial']`` when present) or None."""
    key = spatial_key or "spatial"
    if key not in adata.obsm:
        if spatial_key:
            keys = ", ".join(map(str, adata.obsm.keys())) or "none"
            raise ValueError(
                f"spatial_key '{spatial_key}' is not an obsm key (obsm keys: {keys}); fix the sample sheet "
                "column 'spatial_key' or leave it empty"
            )
        return None
    m = adata.obsm[key]
    m = np.asarray(m.to_numpy() if isinstance(m, pd.DataFrame) else m)
    ok = m.ndim == 2 and m.shape[1] >= 2 and np.issubdtype(m.dtype, np.number)
    if not ok or not np.all(np.isfinite(m[:, :2].astype(np.float64))):
        raise ValueError(
            f"obsm['{key}'] is not a finite numeric cells x 2 (or 3) coordinate array (shape {m.shape}, "
            f"dtype {m.dtype}); fix or remove the coordinates"
        )
    return m.astype(np.float64)


def load_sample(
    path: str | Path,
    *,
    sample: str,
    fmt: str | None = None,
    cell_type_key: str | None = None,
    spatial_key: str | None = None,
    obs_table: str | Path | None = None,
    obs_index: str | None = None,
    subset: str | None = None,
    member: str | None = None,
    gene_map: str | Path | None = None,
    known_genes: set[str] | None = None,
) -> ad.AnnData:
    """Load one sample and return raw counts with gene symbols.

    Parameters
    ----------
    path
        A .h5ad, 10x .h5, 10x mtx folder, .loom or csv/tsv (cells x genes) file.
    sample
        Sample ID, used in error messages and written to ``obs['sample']``.
    fmt
        One of :data:`FORMATS`; guessed from the path when ``None``.
    cell_type_key
        ``obs`` column with author cell-type labels; must exist when given.
    spatial_key
        ``obsm`` key of the cell coordinates, copied to ``obsm['spatial']``; must exist when given.
        When ``None``, ``obsm['spatial']`` is used if present.
    obs_table, obs_index
        A per-cell metadata table (csv/tsv) joined onto ``obs`` by cell ID (column ``obs_index``,
        default the first); a relative name is looked up beside a fetched sample's files first.
    subset
        A pandas query on ``obs`` (after the join) selecting the cells of this sample.
    gene_map, known_genes
        Gene-identifier harmonisation (:func:`cscniche.load._genes.harmonise`): an Ensembl-to-symbol table
        and the symbols the pipeline uses (for R-mangled names such as ``HLA.A``).

    A ``path`` named ``manifest.tsv`` is a fetched sample (:func:`cscniche.load._sources.fetch_sample`); what it
    lists is loaded (:func:`cscniche.load._sources.manifest_target`), or the file or folder ``member`` of it.

    Returns
    -------
    AnnData with ``X`` = ``layers['counts']`` = raw counts (CSR float32).

    Raises
    ------
    InputError
        One line naming the sample and the file: missing, empty or unreadable file, no raw counts
        (log-normalised, negative, NaN), Ensembl IDs without symbols, non-human genes, a missing
        ``cell_type_key`` or ``spatial_key``, bad coordinates.

    Duplicated gene symbols are kept, made unique the scanpy way (``var_names_make_unique``:
    the second ``X`` becomes ``X-1``), logged and recorded in ``uns['cscniche']['load']``; no
    column is dropped or summed, and a signature uses the first copy.
    """
    path, fmt, fetched_dir = _resolve(path, sample=sample, fmt=fmt, member=member)
    try:
        raw = _read(path, fmt)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear line
        raise _unreadable(exc, fmt, sample, path) from None
    raw = _select_cells(raw, sample=sample, path=path, fetched_dir=fetched_dir, obs_table=obs_table,
                        obs_index=obs_index, subset=subset, cell_type_key=cell_type_key)  # fmt: skip
    try:
        where, adata = find_counts(raw)
    except ValueError as exc:
        raise InputError(str(exc), sample=sample, path=str(path)) from None
    return _finish(adata, sample=sample, path=path, fmt=fmt, where=where, spatial_key=spatial_key,
                   gene_map=gene_map, known_genes=known_genes)  # fmt: skip


def _resolve(path: str | Path, *, sample: str, fmt: str | None, member: str | None) -> tuple[Path, str, Path | None]:
    """The file to read (a fetched sample's manifest resolved), its format and the fetched folder (or None)."""
    path = Path(path)
    fetched_dir = None
    if path.name == MANIFEST and path.is_file():
        fetched_dir = path.parent
        path = fetched_dir / member if member else manifest_target(path)
    if not path.exists():
        raise InputError("file not found; check the 'path' column of the sample sheet", sample=sample, path=str(path))
    if path.is_file() and path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes); copy or download it again", sample=sample, path=str(path))
    fmt = fmt or guess_format(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}", sample=sample, path=str(path))
    return path, fmt, fetched_dir


def _unreadable(exc: Exception, fmt: str, sample: str, path: Path) -> InputError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"could not be read as {fmt} ({type(exc).__name__}: {first}); check that the file is complete and of that format",
        sample=sample,
        path=str(path),
    )


def _select_cells(
    raw: ad.AnnData,
    *,
    sample: str,
    path: Path,
    fetched_dir: Path | None,
    obs_table: str | Path | None,
    obs_index: str | None,
    subset: str | None,
    cell_type_key: str | None,
) -> ad.AnnData:
    """Join the metadata table, keep the ``subset`` cells and check ``cell_type_key`` (``X`` may be absent)."""
    if raw.n_obs == 0 or raw.n_vars == 0:
        raise InputError(
            f"has {raw.n_obs} cells and {raw.n_vars} genes; nothing to analyse", sample=sample, path=str(path)
        )
    try:
        if obs_table:
            table = Path(obs_table)
            if fetched_dir is not None and not table.is_absolute() and (fetched_dir / table).exists():
                table = fetched_dir / table
            n = join_obs(raw, table, index_column=obs_index or None)
            log.info("sample %s: metadata of %d of %d cells joined from %s", sample, n, raw.n_obs, table)
        if subset:
            raw = subset_cells(raw, subset)
            log.info("sample %s: %d cells kept by the subset %s", sample, raw.n_obs, subset)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{exc}; fix obs_table/obs_index/subset in the sample sheet", sample=sample, path=str(path)
        ) from None
    if cell_type_key and cell_type_key not in raw.obs.columns:
        cols = ", ".join(map(str, raw.obs.columns[:20])) or "none"
        raise InputError(
            f"cell_type_key '{cell_type_key}' is not an obs column (columns: {cols}); fix the sample sheet",
            sample=sample,
            path=str(path),
        )
    return raw


def _finish(
    adata: ad.AnnData,
    *,
    sample: str,
    path: Path,
    fmt: str,
    where: str,
    spatial_key: str | None,
    gene_map: str | Path | None,
    known_genes: set[str] | None,
) -> ad.AnnData:
    """Gene symbols, species check, coordinates, unique names and provenance, in place on the counts' AnnData.

    Works on metadata alone: ``X`` may be absent (the streaming loader writes the counts afterwards).
    """
    try:
        check_species(adata.var_names)
        gmap = read_gene_map(gene_map) if gene_map else None
        try:
            symbols, symbol_source = _symbols(adata)
        except ValueError:
            if gmap is None:
                raise
            symbols, symbol_source = adata.var_names.astype(str), f"gene map {Path(gene_map).name}"
        symbols, mapping = harmonise(symbols, known=known_genes, gene_map=gmap)
        symbols = pd.Index(symbols)
        check_species(symbols)
        coords = _spatial(adata, spatial_key)
    except ValueError as exc:
        raise InputError(str(exc), sample=sample, path=str(path)) from None
    adata.var["original_id"] = adata.var_names.astype(str)
    adata.var_names = symbols
    dup = sorted(set(adata.var_names[adata.var_names.duplicated()]))
    n_dup = int(adata.var_names.duplicated().sum())
    if n_dup:
        log.warning(
            "sample %s: %d duplicated gene names (%d symbols, e.g. %s) kept and made unique with -1, -2 "
            "suffixes (scanpy var_names_make_unique); gene sets use the first copy",
            sample,
            n_dup,
            len(dup),
            ", ".join(dup[:5]),
        )
        adata.var_names_make_unique()
    if not adata.obs_names.is_unique:
        log.warning("sample %s: duplicated cell IDs made unique with -1, -2 suffixes", sample)
        adata.obs_names_make_unique()
    if coords is not None:
        adata.obsm["spatial"] = coords
    if adata.X is not None:
        adata.layers["counts"] = adata.X.copy()
    adata.obs["sample"] = sample
    adata.uns["cscniche"] = {
        "load": {
            "path": str(path),
            "format": fmt,
            "counts_from": where,
            "symbols_from": symbol_source,
            "n_duplicated_genes": n_dup,
            "duplicated_genes": dup,
            "spatial_from": (spatial_key or "spatial") if coords is not None else "",
            "gene_mapping": mapping.as_dict(),
        }
    }
    if mapping.examples:
        log.info("sample %s: gene identifiers harmonised: %s", sample, mapping.as_dict())
    log.info("sample %s: %d cells x %d genes, counts from %s", sample, adata.n_obs, adata.n_vars, where)
    return adata


#: where an ``.h5ad`` may keep raw counts, in the order :func:`find_counts` tries them: (matrix, its genes)
_H5AD_COUNTS = (("layers/counts", "layers['counts']", "var"), ("raw/X", "raw.X", "raw/var"), ("X", "X", "var"))


def _h5ad_counts(path: Path) -> tuple[str, str, str] | None:
    """The first ``.h5ad`` matrix holding raw counts, judged on its first block, as (key, name, var key).

    ``None`` when a candidate is stored in a way the row-block reader does not take (CSC): load it in memory.
    Raises ValueError, as :func:`find_counts`, when none holds counts.
    """
    reasons = []
    with h5py.File(path, "r") as f:
        present = [c for c in _H5AD_COUNTS if c[0] in f]
        if "X" not in f and not present or "obs" not in f:
            raise KeyError("no 'X'/'obs' elements: not an AnnData file")
        for key, *_ in present:
            node = f[key]
            if isinstance(node, h5py.Group) and node.attrs.get("encoding-type", "") != "csr_matrix":
                return None
    for key, name, var_key in present:
        _, block = next(ondisk.iter_rows(path, key=key))
        why = diagnose_counts(block)
        if why is None:
            return key, name, var_key
        reasons.append(f"{name}: {why}")
    raise ValueError("no raw counts found (" + "; ".join(reasons) + "); give the unnormalised integer count matrix")


def write_sample(path: str | Path, out: str | Path, *, sample: str, **options) -> None:
    """:func:`load_sample` written to ``out`` as an ``.h5ad`` whose ``X`` holds the raw counts (no layers).

    ``options``: the keywords of :func:`load_sample`. An ``.h5ad`` input is streamed in blocks of rows
    (:mod:`cscniche.load._ondisk`): its metadata go through the same checks as in :func:`load_sample`, the counts are
    checked block by block and never held whole, so the peak memory does not grow with the number of cells.
    Other formats are loaded in memory. On error nothing is left at ``out``.
    """
    member, fmt = options.get("member"), options.get("fmt")
    src, fmt, fetched_dir = _resolve(path, sample=sample, fmt=fmt, member=member)
    found = None
    if fmt == "h5ad":
        try:
            found = _h5ad_counts(src)
        except ValueError as exc:
            raise InputError(str(exc), sample=sample, path=str(src)) from None
        except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear line
            raise _unreadable(exc, fmt, sample, src) from None
    if found is None:
        adata = load_sample(path, sample=sample, **options)
        del adata.layers["counts"]
        adata.write_h5ad(out)
        return
    key, where, var_key = found
    try:
        meta = ad.AnnData(
            obs=ondisk.read_elem(src, "obs"),
            var=ondisk.read_elem(src, var_key),
            obsm=ondisk.read_elem(src, "obsm", {}),
            uns=ondisk.read_elem(src, "uns", {}),
        )
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(exc, fmt, sample, src) from None
    meta.obs["_cscniche_row"] = np.arange(meta.n_obs)
    meta = _select_cells(meta, sample=sample, path=src, fetched_dir=fetched_dir, obs_table=options.get("obs_table"),
                         obs_index=options.get("obs_index"), subset=options.get("subset"),
                         cell_type_key=options.get("cell_type_key"))  # fmt: skip
    rows = meta.obs.pop("_cscniche_row").to_numpy(dtype=np.int64)
    meta = _finish(meta, sample=sample, path=src, fmt=fmt, where=where, spatial_key=options.get("spatial_key"),
                   gene_map=options.get("gene_map"), known_genes=options.get("known_genes"))  # fmt: skip
    order = np.argsort(rows, kind="stable")
    with ondisk.H5adWriter(out, var=meta.var, uns=meta.uns) as w:
        for start, block in ondisk.iter_rows(src, key=key):
            lo, hi = np.searchsorted(rows[order], [start, start + block.shape[0]])
            if hi == lo:
                continue
            block = block[rows[order[lo:hi]] - start]
            why = diagnose_counts(block) if block.nnz else None
            if why is not None:
                raise InputError(
                    f"{where} holds raw counts in its first cells but not in cells {start}-{start + block.shape[0]} "
                    f"({why}); give the unnormalised integer count matrix",
                    sample=sample,
                    path=str(src),
                )
            w.append(block)
        obs = meta.obs.iloc[order]
        w.set_obs(obs, obsm={k: np.asarray(v)[order] for k, v in meta.obsm.items()})
    log.info("sample %s: %d cells x %d genes streamed to %s", sample, meta.n_obs, meta.n_vars, out)
