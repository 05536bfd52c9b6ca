"""The pooled random-set null (scDRS-style): agreement with scDRS / a naive reference, calibration, power."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse, stats

from cscniche.stemness.pooled_null import bh_fdr, normalise_scores, pooled_null, pooled_pvalues, subpopulation_test


def _scores(n_cells=1000, n_genes=2000, n_sig=20, n_ctrl=1000, planted=(), delta=0.0, seed=0):
    """Observed and control per-cell indices from independent genes with cell-specific location and scale.

    Index = mean of the set's genes. ``planted`` cells get ``delta`` added to every signature gene.
    """
    rng = np.random.default_rng(seed)
    loc = rng.normal(0, 1, n_cells)[:, None]
    scale = rng.uniform(0.5, 2.0, n_cells)[:, None]
    X = loc + scale * rng.standard_normal((n_cells, n_genes))
    sig = np.arange(n_sig)
    X[np.asarray(planted, dtype=np.int64)[:, None], sig[None, :]] += delta
    pool = np.arange(n_sig, n_genes)
    cols = np.argpartition(rng.random((n_ctrl, pool.size)), n_sig - 1, axis=1)[:, :n_sig]
    ind = sparse.csc_matrix(
        (np.full(n_ctrl * n_sig, 1.0 / n_sig), (pool[cols].ravel(), np.repeat(np.arange(n_ctrl), n_sig))),
        shape=(n_genes, n_ctrl),
    )
    ctrl = np.asarray((ind.T @ X.T).T)
    return X[:, sig].mean(axis=1), ctrl


def _naive(observed, controls, bg):
    """Loop-based reference of the module rule (scDRS _correct_background with var ratio 1, then pooled p)."""
    obs = observed.astype(float).copy()
    ctrl = controls.astype(float).copy()
    obs = obs - obs[bg].mean()
    for b in range(ctrl.shape[1]):
        ctrl[:, b] = ctrl[:, b] - ctrl[bg, b].mean()
    norm = np.empty_like(obs)
    nctrl = np.empty_like(ctrl)
    for i in range(obs.size):
        m, s = ctrl[i].mean(), ctrl[i].std()
        norm[i] = (obs[i] - m) / s
        nctrl[i] = (ctrl[i] - m) / s
    norm = norm - norm[bg].mean()
    for b in range(ctrl.shape[1]):
        nctrl[:, b] = nctrl[:, b] - nctrl[bg, b].mean()
    pool = nctrl[bg].ravel()
    p = np.array([(1 + np.sum(pool >= t)) / (1 + pool.size) for t in norm])
    return norm, nctrl, p


def test_matches_naive_reference_with_background_subset():
    obs, ctrl = _scores(n_cells=150, n_genes=600, n_ctrl=60, planted=range(5), delta=1.0, seed=3)
    bg = np.zeros(150, dtype=bool)
    bg[20:] = True
    res = pooled_null(obs, ctrl, bg)
    norm, nctrl, p = _naive(obs, ctrl, bg)
    np.testing.assert_allclose(res.norm_score, norm, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res.norm_controls, nctrl, rtol=1e-10, atol=1e-10)
    assert np.max(np.abs(res.pvalue - p)) <= 1.0 / (bg.sum() * 60 + 1)  # at most one tie flipped by rounding
    assert np.isnan(res.qvalue[~bg]).all() and np.isfinite(res.qvalue[bg]).all()
    assert res.min_pvalue == pytest.approx(1 / (130 * 60 + 1))
    # index background and boolean background agree
    res2 = pooled_null(obs, ctrl, np.flatnonzero(bg))
    np.testing.assert_array_equal(res2.pvalue, res.pvalue)


def test_matches_scdrs():
    """Cross-check with scDRS itself (scdrs 1.0.2 when measured): same normalised scores (rtol 1e-10) and p-values
    (within one null rank, 1/(N+1)), background = all cells, variance ratio 1."""
    method = pytest.importorskip("scdrs.method", reason="scdrs not installed: the naive reference test covers the rule")
    obs, ctrl = _scores(n_cells=300, n_genes=800, n_ctrl=200, planted=range(10), delta=1.0, seed=5)
    res = pooled_null(obs, ctrl)
    norm, nctrl = method._correct_background(obs.copy(), ctrl.copy(), np.ones(ctrl.shape[1]))
    np.testing.assert_allclose(res.norm_score, norm, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res.norm_controls, nctrl, rtol=1e-10, atol=1e-10)
    p = method._get_p_from_empi_null(norm, nctrl.ravel())
    assert np.max(np.abs(res.pvalue - p)) <= 1.0 / (nctrl.size + 1)


def test_calibrated_without_signal():
    obs, ctrl = _scores(seed=11)
    res = pooled_null(obs, ctrl)
    ks = stats.kstest(res.pvalue, "uniform")
    print(f"null: KS D={ks.statistic:.4f} p={ks.pvalue:.3g}; called at BH 0.1: {np.sum(res.qvalue <= 0.1)} of 1000; "
          f"share p<0.05: {np.mean(res.pvalue < 0.05):.3f}")  # fmt: skip
    assert ks.pvalue > 0.01
    assert np.mean(res.qvalue <= 0.1) <= 0.05
    assert 0.03 <= np.mean(res.pvalue < 0.05) <= 0.07
    sub = subpopulation_test(obs, ctrl)
    assert sub["subpop_pvalue"] > 0.01


def test_subpopulation_test_is_calibrated_over_replicates():
    """100 null tumours; 4,000 genes so that 100 control sets of 20 genes rarely share genes."""
    ps = []
    for seed in range(100):
        obs, ctrl = _scores(n_cells=200, n_genes=4000, n_ctrl=100, seed=100 + seed)
        ps.append(subpopulation_test(obs, ctrl)["subpop_pvalue"])
    ps = np.array(ps)
    print(f"sample-level test under the null, 100 replicates: share p<0.05 = {np.mean(ps < 0.05):.3f}, "
          f"share p<0.2 = {np.mean(ps < 0.2):.3f}")  # fmt: skip
    # measured: 0.08 and 0.24 (control sets sharing few genes; see the docstring's caveat)
    assert np.mean(ps < 0.05) <= 0.12
    assert np.mean(ps < 0.2) <= 0.32


def test_can_call_rare_planted_cells_the_old_floor_cannot():
    planted = np.arange(0, 1000, 200)  # 5 of 1000 cells (0.5 %)
    obs, ctrl = _scores(planted=planted, delta=3.0, seed=21)
    res = pooled_null(obs, ctrl)
    old_p = (1 + np.sum(ctrl >= obs[:, None], axis=1)) / (1 + ctrl.shape[1])
    old_q = bh_fdr(old_p)
    print(f"5 planted of 1000: pooled q of planted {np.round(res.qvalue[planted], 5)}, old min q {old_q.min():.3f}; "
          f"summary {res.summary()}")  # fmt: skip
    assert old_q.min() > 0.1  # 1/(n_ctrl+1) floor: 5 cells at p = 1/1001 give q >= 0.2
    assert np.mean(res.qvalue[planted] < 0.1) >= 0.8
    others = np.setdiff1d(np.arange(1000), planted)
    assert np.sum(res.qvalue[others] <= 0.1) <= 5


def test_power_and_sample_level_test_with_planted_subpopulation():
    planted = np.arange(0, 1000, 10)  # 10 %
    obs, ctrl = _scores(planted=planted, delta=1.5, seed=31)
    res = pooled_null(obs, ctrl)
    called = res.qvalue <= 0.1
    others = np.setdiff1d(np.arange(1000), planted)
    recall, fp = called[planted].mean(), called[others].sum()
    prec = called[planted].sum() / max(1, called.sum())
    sub = subpopulation_test(obs, ctrl)
    print(f"10 % planted, delta 1.5 SD/gene-mean: recall {recall:.2f}, precision {prec:.2f}, false calls {fp}; {sub}")
    assert recall >= 0.7 and prec >= 0.9
    assert sub["subpop_pvalue"] <= 1 / 1001 + 1e-12


def test_summary_floor_and_errors():
    obs, ctrl = _scores(n_cells=100, n_genes=300, n_ctrl=50, seed=1)
    s = pooled_null(obs, ctrl, alpha=0.1).summary()
    assert s["min_pvalue"] == pytest.approx(1 / 5001)
    assert s["bh_floor"] == pytest.approx(100 / 5001)
    assert s["min_cells_callable"] == 1
    with pytest.raises(ValueError):
        pooled_null(obs, ctrl[:-1])
    with pytest.raises(ValueError):
        pooled_null(obs, ctrl[:, :1])
    bad = ctrl.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        pooled_null(obs, bad)
    # deterministic and float64
    a, b = normalise_scores(obs, ctrl), normalise_scores(obs, ctrl)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].dtype == np.float64
    assert pooled_pvalues(np.array([np.inf]), np.zeros(9))[0] == pytest.approx(0.1)
