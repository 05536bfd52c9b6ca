"""Every QC-passed cell of a sample scored with what was fitted on its analysed sketch.

Above ``scale.max_cells`` cells the analysis (embedding, cell typing, CNV, scoring, calibration) runs on a
seeded uniform sketch (:func:`cscniche.preprocess._embed.read_for_analysis`). :func:`project_cells` then streams every
QC-passed cell, in blocks of rows, through the sketch's fitted quantities:

* labels (``cell_type``, ``compartment``, ``leiden``, ``malignant``): the majority among the cell's
  ``n_neighbors`` nearest sketch cells in the sketch's PCA space (the cell's log-normalised counts projected
  on the sketch's loadings; Euclidean neighbours, approximate above 8,192 sketch cells: :class:`SketchNeighbours`);
  ``label_agreement`` is that majority's share.
  Sketch cells keep their own labels;
* signature scores of every method from the cell's own counts: the same control genes (mean), the same gene
  shares and clip (Pearson residuals); UCell and AUCell are per-cell by construction;
* ``stemness_<method>`` and ``stemness``: standardised with the sketch's malignant cells' means and SDs;
* CSC, per definition (``csc_<name>``; ``csc``/``group`` for the first): ``quantile``, the sketch's threshold;
  ``calibrated``, the cell's index and random-set indices in the scale of the sketch's malignant cells
  (:func:`cscniche.stemness.kernels._methods.random_set_pvalues` with ``null``) normalised and tested against the
  sketch's pooled null (:func:`cscniche.stemness.pooled_null.apply_null`), then BH over all malignant cells;
  ``phenotype`` (and each phenotype column), the majority of the cell's nearest sketch cells (positivity is a
  property of the transcriptomic neighbourhood).

A sketch cell gets back exactly its own scores, index, p-value, ``csc_fdr`` and calls (tested); a cell outside
the sketch gets a q from BH over every malignant cell of the sample. With no sketch (every cell analysed) the
table repeats the analysed values. The niche, checkpoint and crosstalk tables stay on the sketch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from ..load import _ondisk as ondisk
from ..preprocess import _embed as _pp
from . import _score as _sc
from . import pooled_null as _pn
from .kernels import _methods as _m
from .kernels import pearson as _pr

log = logging.getLogger(__name__)

LABELS = ("cell_type", "compartment", "leiden", "malignant")


def _lognorm(counts: sparse.csr_matrix, target_sum: float) -> sparse.csr_matrix:
    """:func:`cscniche.preprocess._embed.normalise` (scanpy's ``normalize_total`` then ``log1p``) of a block of cells."""
    block = ad.AnnData(counts.copy())
    block.layers["counts"] = block.X
    _pp.normalise(block, target_sum=target_sum)
    return block.X


#: sketches above this many cells get an approximate neighbour index, as scanpy's kNN (pynndescent)
EXACT_MAX = 8192


class SketchNeighbours:
    """The ``n_neighbors`` nearest sketch cells of query cells in PCA space.

    Exact (brute force) up to :data:`EXACT_MAX` sketch cells; above, pynndescent's approximate index (as scanpy
    uses for its kNN graph from that size on; seeded): on the 100,000-cell sketch of a 1M-cell sample, a 20,000-cell
    block took 3.9 s brute force and 0.45 s with the index (built once in ~40 s), 96 % of the neighbours being
    the exact ones, which a majority vote of 15 tolerates.
    """

    def __init__(self, pca: np.ndarray, n_neighbors: int, *, seed: int = 0):
        self.k = int(min(n_neighbors, len(pca)))
        self.exact = len(pca) <= EXACT_MAX
        if self.exact:
            self.index = NearestNeighbors(n_neighbors=self.k, algorithm="brute").fit(pca)
        else:
            from .._numba import import_umap

            import_umap()  # pynndescent's kernels compiled once, then cached on disk
            from pynndescent import NNDescent

            self.index = NNDescent(pca, n_neighbors=max(30, self.k), random_state=seed)
            self.index.prepare()

    def query(self, pca: np.ndarray) -> np.ndarray:
        """Positions of the nearest sketch cells (queries x k)."""
        if self.exact:
            return self.index.kneighbors(pca, return_distance=False)
        return self.index.query(np.ascontiguousarray(pca, dtype=np.float32), k=self.k)[0]


class SketchModel:
    """What :func:`project_cells` takes from the analysed sketch (an exported ``scored.h5ad``).

    ``fit_null=False`` skips the pooled random-set null (the cost of this step on a small sample): use it when
    every cell is in the sketch, since sketch cells keep their own p-values and calls.
    """

    def __init__(
        self,
        sketch: ad.AnnData,
        gene_sets: dict[str, list[str]],
        stemness_sets: list[str],
        *,
        methods: list[str],
        stemness_method: str,
        index_weighting: str = "sqrt_size",
        pearson_theta: float = 100.0,
        ucell_max_rank: int = 1500,
        aucell_n_up: int | None = None,
        n_neighbors: int = 15,
        definitions: tuple[str, ...] | list[str] = ("calibrated", "phenotype", "quantile"),
        n_random_sets: int = 1000,
        seed: int = 0,
        fit_null: bool = True,
    ):
        self.var_names = sketch.var_names
        self.methods = list(dict.fromkeys([*methods, stemness_method]))
        self.stemness_method, self.stemness_sets = stemness_method, list(stemness_sets)
        self.definitions, self.n_random, self.seed = list(definitions), n_random_sets, seed
        idx = _sc._present_indices(sketch.var_names, gene_sets)
        self.set_names = list(idx)
        self.sets = [idx[n] for n in self.set_names]
        self.ucell_max_rank = min(ucell_max_rank, sketch.n_vars)
        self.aucell_n_up = aucell_n_up
        info = sketch.uns.get("cscniche", {})
        if "mean" in self.methods:
            ctrl = info.get("control_genes")
            if ctrl is None:
                raise ValueError("projecting mean scores needs the sketch's control genes (scoring.mean_engine fast)")
            self.ctrl = [sketch.var_names.get_indexer(list(ctrl[n])) for n in self.set_names]
        if "pearson" in self.methods:
            fitted = _sc.pearson_model(sketch, theta=pearson_theta)
            self.pearson_p, self.pearson_clip, self.theta = fitted.p, fitted.clip, fitted.theta
        # PCA: scanpy centres the highly variable genes on the sketch's means and keeps the loadings in varm
        self.hvg = np.flatnonzero(sketch.var["highly_variable"].to_numpy(dtype=bool))
        self.loadings = np.asarray(sketch.varm["PCs"])[self.hvg].astype(np.float64)
        self.hvg_mean = np.asarray(sketch.X[:, self.hvg].mean(axis=0), dtype=np.float64).ravel()
        self.pca = np.asarray(sketch.obsm["X_pca"], dtype=np.float64)
        self.neighbours = SketchNeighbours(self.pca, n_neighbors, seed=seed)
        obs = sketch.obs
        self.phenotypes = [c for c in info.get("phenotypes", []) if c in obs]
        self.phenotype = info.get("csc_phenotype", "")
        self.labels = {}
        for key in [*LABELS, *self.phenotypes]:
            values = obs[key].astype(bool) if key == "malignant" or key in self.phenotypes else obs[key].astype(str)
            codes, uniques = pd.factorize(values, sort=True)
            self.labels[key] = (codes, uniques)
        mal = obs["malignant"].to_numpy(dtype=bool)
        reference = mal if mal.sum() >= 10 else np.ones(sketch.n_obs, dtype=bool)  # as scoring.stemness_index
        self.weights = _sc.index_weights(sketch.var_names, gene_sets, self.stemness_sets, index_weighting)
        self.standard = {}
        for m in self.methods:
            cols = [f"{_sc.METHODS[m]}_{s}" for s in self.stemness_sets]
            v = obs[cols].to_numpy(dtype=np.float64)[reference]
            sd = v.std(axis=0)
            sd[~(sd > 0)] = 1.0
            self.standard[m] = (v.mean(axis=0), sd)
        self.threshold = info.get("csc_threshold")
        self.null = self.pooled = None
        # the pooled null gives p-values to cells outside the sketch; without any (no sketch), it is not fitted
        if fit_null and "calibrated" in self.definitions and mal.sum() >= 3:
            self.bins = _m.expression_bins(_m.gene_means(sketch.X), 25)
            stem_idx = _sc._present_indices(sketch.var_names, {k: gene_sets[k] for k in self.stemness_sets})
            self.stem_sets = [stem_idx[k] for k in self.stemness_sets]
            scores = self.scores(sketch.X[mal], sketch.layers["counts"][mal])
            observed = np.column_stack([scores[f"{_sc.METHODS[stemness_method]}_{k}"] for k in self.stemness_sets])
            _, self.null, obs_index, ctrl_index = self._pvalues(
                sketch.X[mal], sketch.layers["counts"][mal], observed, fit=True
            )
            self.pooled = _pn.fit_null(obs_index, ctrl_index)

    def scores(self, x: sparse.csr_matrix, counts: sparse.csr_matrix) -> dict[str, np.ndarray]:
        """Every method's score of every set for these cells (log-normalised ``x``, raw ``counts``)."""
        out = {}
        if "mean" in self.methods:
            m = _m.set_means(x, self.sets + self.ctrl)
            k = len(self.sets)
            for j, n in enumerate(self.set_names):
                out[f"score_{n}"] = m[:, j] - m[:, k + j]
        if "ucell" in self.methods:
            u = _m.ucell(x, self.sets, max_rank=self.ucell_max_rank)
            out.update({f"ucell_{n}": u[:, j] for j, n in enumerate(self.set_names)})
        if "aucell" in self.methods:
            a = _m.aucell(x, self.sets, n_up=self.aucell_n_up)
            out.update({f"aucell_{n}": a[:, j] for j, n in enumerate(self.set_names)})
        if "pearson" in self.methods:
            p = _pr.set_means(counts, self.sets, self._pearson(counts))
            out.update({f"pearson_{n}": p[:, j] for j, n in enumerate(self.set_names)})
        return out

    def _pearson(self, counts: sparse.csr_matrix) -> _pr.PearsonModel:
        lib = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
        return _pr.PearsonModel(lib, self.pearson_p, self.theta, self.pearson_clip)

    def _pvalues(self, x, counts, observed, *, fit: bool = False):
        method = self.stemness_method
        offsets = T = means = None
        if method == "mean":
            T = x
            offsets = _m.set_means(x, [self.ctrl[self.set_names.index(k)] for k in self.stemness_sets])
        elif method == "ucell":
            T = _m.ucell_transform(x, max_rank=self.ucell_max_rank)
        elif method == "pearson":
            model = self._pearson(counts)
            excess = _pr.nonzero_excess(counts, model)

            def means(cols):
                return _pr.set_means(counts, cols, model, excess=excess)

        else:
            raise ValueError(f"empirical p-values are implemented for 'mean', 'ucell' and 'pearson', not {method!r}")
        return _m.random_set_pvalues(
            T, self.stem_sets, observed, self.bins, n_random=self.n_random, offsets=offsets, seed=self.seed,
            means=means, weights=self.weights, null=None if fit else self.null, return_null=True, return_indices=True,
        )  # fmt: skip

    def vote(self, pca: np.ndarray) -> dict[str, np.ndarray]:
        """Majority labels of the nearest sketch cells and the share of the ``cell_type`` majority."""
        nbr = self.neighbours.query(pca)
        out = {}
        for key, (codes, uniques) in self.labels.items():
            c = codes[nbr]
            counts = np.zeros((len(nbr), len(uniques)), dtype=np.int64)
            np.add.at(counts, (np.repeat(np.arange(len(nbr)), nbr.shape[1]), c.ravel()), 1)
            win = counts.argmax(axis=1)  # ties: the first label in sorted order
            out[key] = np.asarray(uniques)[win]
            if key == "cell_type":
                out["label_agreement"] = counts.max(axis=1) / nbr.shape[1]
        return out

    def project(self, x: sparse.csr_matrix) -> np.ndarray:
        """PCA coordinates of log-normalised cells on the sketch's loadings (as ``obsm['X_pca']``)."""
        return np.asarray(x[:, self.hvg] @ self.loadings) - self.hvg_mean @ self.loadings


def project_cells(
    path: str | Path,
    sketch: ad.AnnData,
    model: SketchModel,
    *,
    target_sum: float = 1e4,
    alpha: float = 0.1,
    markers: list[str] | tuple[str, ...] = _sc.CSC_MARKERS,
) -> pd.DataFrame:
    """One row per QC-passed cell of ``path`` (an ``.h5ad`` of raw counts), in its order; see the module."""
    qc_obs = ondisk.read_elem(path, "obs")
    if list(ondisk.read_elem(path, "var").index) != list(model.var_names):
        raise ValueError("the sketch and the QC-passed counts have different genes")
    where = pd.Index(sketch.obs_names).get_indexer(qc_obs.index)
    if np.any(where[np.flatnonzero(where >= 0)] < 0) or (where >= 0).sum() != sketch.n_obs:
        raise ValueError("the sketch's cells are not all among the QC-passed cells")
    marker_idx = {g: model.var_names.get_loc(g) for g in markers if g in model.var_names}
    parts = []
    pvals = []
    for start, counts in ondisk.iter_rows(path):
        stop = start + counts.shape[0]
        x = _lognorm(counts, target_sum)
        block = pd.DataFrame(index=qc_obs.index[start:stop])
        own = where[start:stop]
        block["in_sketch"] = own >= 0
        labels = model.vote(model.project(x))
        for key in [*LABELS, *model.phenotypes]:
            flag = key == "malignant" or key in model.phenotypes
            values = labels[key].astype(bool) if flag else labels[key].astype(object)
            if not flag:
                values[own >= 0] = sketch.obs[key].astype(str).to_numpy()[own[own >= 0]]
            else:
                values[own >= 0] = sketch.obs[key].to_numpy(dtype=bool)[own[own >= 0]]
            block[key] = values
        block["label_agreement"] = np.where(own >= 0, 1.0, labels["label_agreement"])
        for c in ("n_genes", "total_counts", "pct_counts_mt"):
            if c in qc_obs:
                block[c] = qc_obs[c].to_numpy()[start:stop]
        scores = model.scores(x, counts)
        for c, v in scores.items():
            block[c] = v
        for m in model.methods:
            mu, sd = model.standard[m]
            cols = [f"{_sc.METHODS[m]}_{s}" for s in model.stemness_sets]
            v = np.column_stack([scores[c] for c in cols])
            block[f"stemness_{m}"] = ((v - mu) / sd) @ model.weights
        block["stemness"] = block[f"stemness_{model.stemness_method}"]
        for g, i in marker_idx.items():
            block[f"expr_{g}"] = x[:, i].toarray().ravel().astype(np.float64)
        p = np.full(len(block), np.nan)
        mal = block["malignant"].to_numpy(dtype=bool)
        if model.pooled is not None and mal.any():
            prefix = _sc.METHODS[model.stemness_method]
            observed = block.loc[mal, [f"{prefix}_{k}" for k in model.stemness_sets]].to_numpy(dtype=np.float64)
            _, _, obs_index, ctrl_index = model._pvalues(x[mal], counts[mal], observed)
            _, p[mal] = _pn.apply_null(obs_index, ctrl_index, model.pooled)
        pvals.append(p)
        parts.append(block)
        log.info("projected cells %d-%d", start, stop)
    table = pd.concat(parts)
    mal = table["malignant"].to_numpy(dtype=bool)
    in_sketch = table["in_sketch"].to_numpy(dtype=bool)
    pos = where[where >= 0]
    sk = sketch.obs.iloc[pos]
    calls = {}
    if "calibrated" in model.definitions:
        p = np.concatenate(pvals)
        q = np.full(len(table), np.nan)
        if model.pooled is not None:
            q[mal] = _m.bh_fdr(p[mal])
        # sketch cells keep their own p, q and call (the analysis of the sketch is the one reported)
        for col, arr in (("stemness_pvalue", p), ("csc_fdr", q)):
            if col in sk:
                arr[in_sketch] = sk[col].to_numpy(dtype=np.float64)
        table["stemness_pvalue"], table["csc_fdr"] = p, q
        calls["calibrated"] = mal & (np.nan_to_num(q, nan=1.0) <= alpha)
    if "quantile" in model.definitions:
        thr = model.threshold
        calls["quantile"] = (
            mal & (table["stemness"].to_numpy() >= thr) if thr is not None else np.zeros(len(table), dtype=bool)
        )
    if "phenotype" in model.definitions:
        ph = model.phenotype
        calls["phenotype"] = mal & table[ph].to_numpy(dtype=bool) if ph in table else np.zeros(len(table), bool)
    for d in model.definitions:
        c = calls[d]
        if f"csc_{d}" in sk:
            c[in_sketch] = sk[f"csc_{d}"].to_numpy(dtype=bool)
        table[f"csc_{d}"] = c
    csc = table[f"csc_{model.definitions[0]}"].to_numpy(dtype=bool)
    table["csc"] = csc
    table["group"] = np.where(csc, "CSC", np.where(mal, "nonCSC", table["cell_type"].astype(str)))
    table.index.name = "cell_id"
    return table.reset_index()
