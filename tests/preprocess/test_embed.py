"""Embedding at a size where scanpy switches to approximate kNN (pynndescent, above 8,192 cells)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc
from scipy import sparse

from cscniche import EmbeddingParams
from cscniche.preprocess import _embed as preprocess


def test_embed_above_scanpys_exact_knn_limit():
    """Every sample of more than 8,192 cells took this path; with pynndescent 0.6+ and scipy 1.17 it raised
    AttributeError ('csr_array' has no 'getnnz'), which no smaller test data could show."""
    rng = np.random.default_rng(0)
    n, g = 8300, 100
    group = rng.integers(0, 3, n)
    mu = rng.lognormal(0, 1, (3, g))[group]
    a = ad.AnnData(sparse.csr_matrix(rng.poisson(mu).astype(np.float32)))
    a.var_names = [f"g{i}" for i in range(g)]
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    preprocess.embed_and_cluster(a, params=EmbeddingParams(n_top_genes=100, n_pcs=10, umap=False), seed=0)
    d = a.obsp["distances"]
    k = np.diff(d.indptr)
    assert d.shape == (n, n) and k.min() == k.max() >= 14  # a kNN graph: the same neighbour count per cell
    # three planted groups are recovered by the clusters
    tab = np.array([[np.sum((a.obs["leiden"] == c) & (group == k)) for c in a.obs["leiden"].cat.categories]
                    for k in range(3)])  # fmt: skip
    assert (tab.max(axis=0) / tab.sum(axis=0)).min() > 0.95
