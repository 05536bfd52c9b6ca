"""Neighbour enrichment: planted structure found, no structure not found, edge cases said in a note."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from cscniche.niche._graphs import knn_adjacency, neighbour_enrichment, spatial_adjacency


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


def test_spatial_adjacency_matches_sklearn_knn_and_radius():
    """The squidpy-built graph equals an exact sklearn kNN / radius search (tolerance: identical edges)."""
    from sklearn.neighbors import NearestNeighbors

    coords = np.random.default_rng(0).uniform(0, 100, (300, 2))
    adj = spatial_adjacency(coords, k=6)
    _, idx = NearestNeighbors(n_neighbors=7).fit(coords).kneighbors(coords)
    ref = sparse.csr_matrix((np.ones(300 * 6), (np.repeat(np.arange(300), 6), idx[:, 1:].ravel())), shape=(300, 300))
    assert (adj != ref).nnz == 0
    rad = spatial_adjacency(coords, radius=8.0).toarray()
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.testing.assert_array_equal(rad, ((d <= 8.0) & (d > 0)).astype(np.float32))


def test_permutation_within_strata_removes_sample_confounding():
    """Two samples: one rich in CSC and macrophage contacts, one poor. Pooled permutation calls an
    enrichment that is only a sample effect; permuting within samples does not."""
    rng = np.random.default_rng(0)
    n_mal, n_imm = 400, 200
    n = 2 * n_mal + n_imm
    ct = np.array(["Malignant"] * (2 * n_mal) + ["Macrophage"] * (n_imm // 2) + ["T"] * (n_imm // 2))
    comp = np.where(ct == "Malignant", "malignant", "immune")
    strata = np.array(["a"] * n_mal + ["b"] * n_mal + ["x"] * n_imm)
    csc = np.zeros(n, dtype=bool)
    csc[rng.choice(n_mal, 120, replace=False)] = True  # sample a: 30 % CSC
    csc[n_mal + rng.choice(n_mal, 20, replace=False)] = True  # sample b: 5 % CSC
    mac, t = np.flatnonzero(ct == "Macrophage"), np.flatnonzero(ct == "T")
    rows, cols = [], []
    for i in range(2 * n_mal):
        pool = mac if i < n_mal else t  # sample a sits among macrophages, b among T cells
        rows += [i] * 3
        cols += list(rng.choice(pool, 3, replace=False))
    adj = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    kw = dict(sample="s", neighbourhood="knn", n_permutations=300, seed=0)
    pooled = neighbour_enrichment(adj, ct, comp, csc, **kw).set_index(["group", "immune_type"])
    within = neighbour_enrichment(adj, ct, comp, csc, strata=strata, **kw).set_index(["group", "immune_type"])
    assert pooled.loc[("CSC", "Macrophage"), "fdr"] < 0.05
    assert within.loc[("CSC", "Macrophage"), "fdr"] > 0.05
    assert abs(within.loc[("CSC", "Macrophage"), "log2_enrichment"]) < 0.1


def test_malignant_flag_overrides_compartment():
    adj, ct, comp, csc = _planted()
    mal = comp == "malignant"
    mal[:200] = False  # only half of the malignant-compartment cells are confirmed malignant
    csc = csc & mal
    df = neighbour_enrichment(adj, ct, comp, csc, malignant=mal, sample="s", neighbourhood="knn", n_permutations=50)
    assert df.loc[df.group == "CSC", "n_cells"].iloc[0] == csc.sum()
    assert df.loc[df.group == "nonCSC", "n_cells"].iloc[0] == mal.sum() - csc.sum()


def test_expected_fraction_sums_to_immune_share():
    adj, ct, comp, csc = _planted()
    df = neighbour_enrichment(adj, ct, comp, csc, sample="s", neighbourhood="knn", n_permutations=200, seed=0)
    for _, g in df.groupby("group"):
        # every neighbour in the toy graph is immune: fractions sum to 1
        assert g.observed_fraction.sum() == pytest.approx(1.0)
        assert g.expected_fraction.sum() == pytest.approx(1.0, abs=1e-9)


def test_squidpy_table_on_planted_niche():
    from cscniche.niche._graphs import squidpy_enrichment

    adj, ct, comp, csc = _planted()
    group = np.where(csc, "CSC", np.where(comp == "malignant", "nonCSC", ct))
    df = squidpy_enrichment(adj, group, comp, sample="s", n_permutations=200, seed=0).set_index(
        ["group", "neighbour_group"]
    )
    assert df.loc[("CSC", "Macrophage"), "count"] == 120
    assert df.loc[("CSC", "Macrophage"), "zscore"] > df.loc[("nonCSC", "Macrophage"), "zscore"]
    none = squidpy_enrichment(adj, np.where(group == "CSC", "nonCSC", group), comp, sample="s", n_permutations=20)
    assert none.note.tolist() == ["no CSC"]


def test_csc_niche_members_both_directions():
    from cscniche.niche._graphs import csc_niche_members

    adj = sparse.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=float))
    csc = np.array([True, False, False, False])
    # cell 1 is a neighbour of CSC 0 (column), cell 3 neighbours cell 2 only
    assert csc_niche_members(adj, csc).tolist() == [False, True, False, False]


def test_shared_knn_corrects_a_batch_shift():
    """Two samples of one patient with a strong technical shift: after ComBat the kNN graph mixes them."""
    import anndata as ad

    from cscniche.niche._graphs import shared_knn

    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, (2, 200))  # two cell states
    mats = []
    for b in range(2):
        state = rng.integers(0, 2, 300)
        x = base[state] + rng.normal(0, 0.5, (300, 200)) + 3.0 * b  # batch b shifts every gene
        a = ad.AnnData(x.astype(np.float32))
        a.obs_names = [f"s{b}_{i}" for i in range(300)]
        a.obs["sample"] = f"s{b}"
        a.obs["state"] = state
        a.var_names = [f"g{i}" for i in range(200)]
        mats.append(a)
    joint = shared_knn(mats, n_pcs=10, n_neighbors=10)
    adj = knn_adjacency(joint.obsp["distances"])
    batch = joint.obs["sample"].to_numpy()
    r, c = adj.nonzero()
    assert (batch[r] != batch[c]).mean() > 0.3  # mixed across samples
    state = joint.obs["state"].to_numpy()
    assert (state[r] == state[c]).mean() > 0.95  # biology kept


def test_patient_neighbours_on_a_shared_embedding():
    """Two samples of one patient with a technical shift; CSC cells carry part of the macrophage
    programme (planted), so on the shared, corrected kNN graph their neighbours are enriched for
    macrophages (labels permuted within each sample)."""
    import anndata as ad

    import cscniche as cn

    rng = np.random.default_rng(1)
    n_genes = 120
    prof = {t: rng.gamma(2.0, 1.0, n_genes) for t in ("Malignant", "Macrophage", "T")}
    samples = []
    for b in range(2):
        ct = np.array(["Malignant"] * 300 + ["Macrophage"] * 100 + ["T"] * 100)
        csc = np.zeros(ct.size, dtype=bool)
        csc[:10] = True
        mean = np.array([prof[t] for t in ct])
        mean[csc] = 0.15 * prof["Malignant"] + 0.85 * prof["Macrophage"]
        x = np.log1p(rng.poisson(mean * 3) * (1.0 + 0.8 * b))  # sample 2: a global technical shift
        a = ad.AnnData(x.astype(np.float32))
        a.obs_names = [f"s{b}_{i}" for i in range(ct.size)]
        a.var_names = [f"g{i}" for i in range(n_genes)]
        a.obs["sample"] = f"s{b}"
        a.obs["cell_type"] = ct
        a.obs["compartment"] = np.where(ct == "Malignant", "malignant", "immune")
        a.obs["malignant"] = ct == "Malignant"
        a.obs["csc"] = csc
        samples.append(a)
    df = cn.niche.patient_neighbours(
        samples,
        patient="P1",
        neighbours=cn.NeighboursParams(n_permutations=500),
        embedding=cn.EmbeddingParams(n_pcs=10, n_neighbors=10),
    )
    row = df[(df.group == "CSC") & (df.immune_type == "Macrophage")].iloc[0]
    assert row["sample"] == "P1" and row["neighbourhood"] == "knn_shared"
    assert row.n_cells == 20 and row.log2_enrichment > 1 and row.fdr < 0.05
    t = df[(df.group == "CSC") & (df.immune_type == "T")].iloc[0]
    assert t.log2_enrichment <= 0.5
    assert set(df.group) == {"CSC"} and df["note"].str.startswith("transcriptional neighbours").all()


def _scored(n_mal=120, n_imm=80, seed=0):
    """A scored-like AnnData: cell types, compartments, CSC flags, groups, a kNN graph and coordinates."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    adj, ct, comp, csc = _planted(seed=seed, n_mal=n_mal, n_imm=n_imm)
    a = ad.AnnData(np.zeros((ct.size, 1), dtype=np.float32))
    a.obs["cell_type"], a.obs["compartment"], a.obs["csc"] = ct, comp, csc
    a.obs["group"] = np.where(csc, "CSC", np.where(comp == "malignant", "nonCSC", ct))
    a.obsp["distances"] = adj
    a.obsm["spatial"] = rng.uniform(0, 100, (ct.size, 2))
    return a


def test_neighbourhood_graphs_knn_then_spatial():
    import cscniche as cn
    from cscniche import InputError

    a = _scored()
    xy = a.obsm["spatial"]
    graphs = cn.niche.neighbourhood_graphs(a, sample="s", neighbours=cn.NeighboursParams(spatial_k=4))
    assert [kind for _, kind in graphs] == ["knn", "spatial"]
    assert (graphs[0][0] != knn_adjacency(a.obsp["distances"])).nnz == 0
    assert (graphs[1][0] != spatial_adjacency(xy, k=4)).nnz == 0
    [(adj, kind)] = cn.niche.neighbourhood_graphs(
        a, sample="s", neighbours=cn.NeighboursParams(spatial_k=4), single=True
    )
    assert kind == "spatial" and (adj != graphs[1][0]).nnz == 0
    a.obs["x"], a.obs["y"] = xy[:, 0] * 2, xy[:, 1] * 2  # obs columns win over obsm['spatial']
    [(adj, _)] = cn.niche.neighbourhood_graphs(
        a, sample="s", neighbours=cn.NeighboursParams(spatial_radius=10), spatial_x="x", spatial_y="y", single=True
    )
    assert (adj != spatial_adjacency(xy * 2, radius=10)).nnz == 0
    with pytest.raises(InputError, match="sample 's'.*not obs columns; fix the x_col/y_col columns"):
        cn.niche.neighbourhood_graphs(a, sample="s", spatial_x="nope", spatial_y="y")
    del a.obsm["spatial"]
    assert [k for _, k in cn.niche.neighbourhood_graphs(a, sample="s")] == ["knn"]
    assert [k for _, k in cn.niche.neighbourhood_graphs(a, sample="s", single=True)] == ["knn"]


def test_stages_use_every_graph_the_same_way():
    """neighbours and niche tables: one block per graph (knn, spatial); squidpy: the spatial graph only."""
    import cscniche as cn

    a = _scored()
    nb = cn.niche.neighbours(a, sample="s", neighbours=cn.NeighboursParams(n_permutations=50, spatial_k=4), seed=2)
    assert list(dict.fromkeys(nb["neighbourhood"])) == ["knn", "spatial"]
    from cscniche.niche.spatial_null import spatial_neighbour_enrichment

    # the spatial block is the patch-regrowth null on the k-nearest graph (issue 16: the default)
    direct = spatial_neighbour_enrichment(
        a.obsm["spatial"], a.obs["cell_type"].to_numpy(), a.obs["compartment"].to_numpy(),
        a.obs["csc"].to_numpy(), None, k=4, n_permutations=50, seed=2,
    )  # fmt: skip
    sp = nb[(nb["neighbourhood"] == "spatial") & (nb["definition"] == "primary")]
    assert (sp["null"] == "patch_regrowth").all()
    np.testing.assert_allclose(sp["p"].to_numpy(dtype=float), direct["p"].to_numpy(dtype=float))
    sq = cn.niche.nhood_enrichment(a, sample="s", neighbours=cn.NeighboursParams(n_permutations=20, spatial_k=4))
    assert set(sq["neighbourhood"]) == {"spatial"}


def test_run_table_stage_reads_calls_and_writes(tmp_path):
    """The shared adapter of the table scripts: h5ad input, other inputs and params as keywords, a config
    section as its parameter object, the table to output[0]; a keyword given twice or an unknown key is refused."""
    import pandas as pd
    from snakemake.iocontainers import InputFiles, Namedlist, OutputFiles, Params, Wildcards

    import cscniche as cn
    from cscniche._smk import run_table_stage

    _scored().write_h5ad(tmp_path / "a.h5ad")
    seen = {}

    def stage(adata, *, sample, **kw):
        seen.update(kw, n_obs=adata.n_obs, sample=sample)
        return pd.DataFrame({"sample": [sample], "n": [adata.n_obs]})

    smk = Namedlist()
    smk.input = InputFiles(fromdict={"h5ad": str(tmp_path / "a.h5ad"), "genes": "g.tsv"})
    smk.output = OutputFiles([str(tmp_path / "t.tsv")])
    smk.params = Params(fromdict={"neighbours": {"spatial_k": 3, "n_permutations": 9}, "seed": 1})
    smk.wildcards = Wildcards(fromdict={"sample": "s1"})
    smk.rule = "x"
    run_table_stage(smk, stage)
    neighbours = cn.NeighboursParams(spatial_k=3, n_permutations=9)
    assert seen == {"genes": "g.tsv", "neighbours": neighbours, "seed": 1, "n_obs": 200, "sample": "s1"}
    assert pd.read_csv(tmp_path / "t.tsv", sep="\t").to_dict("list") == {"sample": ["s1"], "n": [200]}
    smk.params = Params(fromdict={"neighbours": {"seed": 3}, "seed": 1})
    with pytest.raises(TypeError, match=r"unknown key\(s\) in config section 'neighbours': 'seed'"):
        run_table_stage(smk, stage)
    smk.params = Params(fromdict={"genes": "h.tsv"})
    with pytest.raises(TypeError, match=r"rule 'x': the keyword 'genes' is given twice"):
        run_table_stage(smk, stage)
