"""Neighbour enrichment: planted structure found, no structure not found, edge cases said in a note."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from cscniche.neighbours import knn_adjacency, neighbour_enrichment, spatial_adjacency


def _planted(seed=0, n_mal=400, n_imm=300, planted=True):
    """Malignant cells on a line; CSC cells (first 40) neighbour macrophages when planted."""
    rng = np.random.default_rng(seed)
    n = n_mal + n_imm
    ct = np.array(["Malignant"] * n_mal + ["Macrophage"] * (n_imm // 2) + ["T"] * (n_imm - n_imm // 2))
    comp = np.where(ct == "Malignant", "malignant", "immune")
    csc = np.zeros(n, dtype=bool)
    csc[rng.choice(n_mal, 40, replace=False)] = True
    mac = np.flatnonzero(ct == "Macrophage")
    t = np.flatnonzero(ct == "T")
    rows, cols = [], []
    for i in range(n_mal):
        if planted and csc[i]:
            nb = rng.choice(mac, 3, replace=False)
        else:
            nb = rng.choice(np.concatenate([mac, t]), 3, replace=False)
        rows += [i] * 3
        cols += list(nb)
    adj = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return adj, ct, comp, csc


def test_planted_niche_is_found():
    adj, ct, comp, csc = _planted()
    df = neighbour_enrichment(adj, ct, comp, csc, sample="s", neighbourhood="knn", n_permutations=500, seed=1)
    row = df[(df.group == "CSC") & (df.immune_type == "Macrophage")].iloc[0]
    assert row.observed == 120  # 40 CSC x 3 macrophage neighbours
    assert row.log2_enrichment > 0.5 and row.fdr < 0.05
    t = df[(df.group == "CSC") & (df.immune_type == "T")].iloc[0]
    assert t.observed == 0 and t.log2_enrichment < 0 and t.fdr < 0.05


def test_no_structure_is_not_found():
    fdrs = []
    for seed in range(5):
        adj, ct, comp, csc = _planted(seed=seed, planted=False)
        df = neighbour_enrichment(adj, ct, comp, csc, sample="s", neighbourhood="knn", n_permutations=300, seed=seed)
        fdrs.extend(df.fdr)
    # under the null, at most one of the 20 rows may reach FDR < 0.05 by chance
    assert sum(f < 0.05 for f in fdrs) <= 1


def test_deterministic_with_seed():
    adj, ct, comp, csc = _planted()
    a = neighbour_enrichment(adj, ct, comp, csc, sample="s", neighbourhood="knn", n_permutations=100, seed=3)
    b = neighbour_enrichment(adj, ct, comp, csc, sample="s", neighbourhood="knn", n_permutations=100, seed=3)
    assert a.equals(b)


@pytest.mark.parametrize(
    ("drop", "note"),
    [("malignant", "no malignant cells"), ("immune", "no immune cells"), ("csc", "no CSC")],
)
def test_edge_cases_write_a_note(drop, note):
    adj, ct, comp, csc = _planted()
    comp = comp.copy()
    if drop == "malignant":
        comp[comp == "malignant"] = "other"
    elif drop == "immune":
        comp[comp == "immune"] = "stromal"
    else:
        csc = np.zeros_like(csc)
    df = neighbour_enrichment(adj, ct, comp, csc, sample="s", neighbourhood="knn", n_permutations=10)
    assert len(df) == 1 and df.note.iloc[0] == note


def test_spatial_adjacency_k_nearest():
    coords = np.array([[0, 0], [1, 0], [10, 0], [11, 0], [30, 0]], dtype=float)
    adj = spatial_adjacency(coords, k=1).toarray()
    assert adj.sum(axis=1).tolist() == [1, 1, 1, 1, 1]
    assert adj[0, 1] == 1 and adj[2, 3] == 1 and adj[4, 3] == 1
    with pytest.raises(ValueError, match="finite"):
        spatial_adjacency(np.array([[0, np.nan], [1, 1]]))


def test_knn_adjacency_binary_without_self():
    d = sparse.csr_matrix(np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 2.0], [0.0, 2.0, 0.0]]))
    adj = knn_adjacency(d).toarray()
    np.testing.assert_array_equal(adj, (d.toarray() > 0).astype(float))
