"""Held-out validation of the stemness score and the calibrated CSC call.

The generator here is deliberately not the demo's (and nothing was tuned to it): a gamma-Poisson tumour of
malignant cells only, with its own gene means, library sizes, extra dropout and a planted stem-like
subpopulation in which a 20-gene signature and a 4-gene marker set are raised ``effect``-fold. It varies seed,
effect size and dropout; each case prints AUROC (planted vs other malignant cells) and the false-discovery
proportion of the FDR rule (non-planted among CSC calls) next to alpha. ``pytest -m slow -s`` shows the grid.

Next to each AUROC the test prints the Bayes-optimal AUROC: the likelihood ratio of the generator's own model
(gamma-Poisson with the true means, library sizes and dropout rate, planted genes known), which no score can
beat; it tells an easy case from one where the information is not in the data.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse
from scipy.stats import nbinom
from sklearn.metrics import roc_auc_score

from cscniche.stemness import _score as scoring

ALPHA = 0.1


def tumour(seed: int, effect: float, dropout: float, *, n_cells=1500, n_genes=3000, fraction=0.12, expressed=True):
    """``expressed``: signature genes drawn among genes with >= 0.3 expected counts per cell (as curated
    signatures are of expressed genes); otherwise from all genes (most then have < 0.2 counts per cell).
    ``uns['truth']`` keeps what the Bayes-optimal score needs (never seen by the pipeline)."""
    rng = np.random.default_rng(seed + 1000)
    base = rng.lognormal(-1.0, 1.5, n_genes)
    lib = rng.lognormal(np.log(3000), 0.5, n_cells)
    planted = rng.random(n_cells) < fraction
    pool = np.flatnonzero(base / base.sum() * 3000 >= 0.3) if expressed else np.arange(n_genes)
    genes = rng.choice(pool, 24, replace=False)
    mu = np.outer(lib / base.sum(), base)
    mu[np.ix_(planted, genes)] *= effect
    lam = rng.gamma(3.0, mu / 3.0)
    counts = rng.poisson(lam).astype(np.float32)
    counts[rng.random(counts.shape) < dropout] = 0
    names = [f"g{i}" for i in range(n_genes)]
    a = ad.AnnData(sparse.csr_matrix(counts), var=pd.DataFrame(index=names))
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    a.obs["malignant"] = True
    a.obs["cell_type"] = "tumour"
    a.obs["planted"] = planted
    sets = {"SIGNATURE20": [names[i] for i in genes[:20]], "MARKERS4": [names[i] for i in genes[20:]]}
    a.uns["truth"] = {
        "mu0": np.outer(lib / base.sum(), base[genes]),
        "genes": genes,
        "effect": effect,
        "dropout": dropout,
    }
    return a, sets


def bayes_auroc(a) -> float:
    """AUROC of the generator's log-likelihood ratio (planted vs not), the best any score can reach."""
    t = a.uns["truth"]
    c = a.layers["counts"][:, t["genes"]].toarray()

    def loglik(mu):
        pm = nbinom.pmf(c, 3.0, 3.0 / (3.0 + mu))
        return np.log(np.where(c == 0, t["dropout"] + (1 - t["dropout"]) * pm, (1 - t["dropout"]) * pm))

    llr = (loglik(t["mu0"] * t["effect"]) - loglik(t["mu0"])).sum(axis=1)
    return float(roc_auc_score(a.obs["planted"], llr))


def run(seed, effect, dropout, method="pearson", n_random=500, expressed=True, weighting="sqrt_size"):
    a, sets = tumour(seed, effect, dropout, expressed=expressed)
    scoring.score_signatures(a, sets, methods=[method], seed=seed, min_fraction=1.0)
    prefix = scoring.METHODS[method]
    w = scoring.index_weights(a.var_names, sets, list(sets), weighting)
    a.obs["stemness"] = scoring.stemness_index(a, list(sets), prefix=prefix, weights=w)
    scoring.calibrate_stemness(a, sets, list(sets), method=method, n_random=n_random, seed=seed, weighting=weighting)
    scoring.call_csc(a, rule="fdr", alpha=ALPHA)
    planted = a.obs["planted"].to_numpy()
    csc = a.obs["csc"].to_numpy()
    auroc = roc_auc_score(planted, a.obs["stemness"]) if planted.any() else np.nan
    fdp = float((csc & ~planted).sum() / max(csc.sum(), 1))
    power = float(csc[planted].mean()) if planted.any() else np.nan
    fpr = float(csc[~planted].mean())
    best = bayes_auroc(a) if planted.any() and effect != 1 else np.nan
    a.uns["bayes_auroc"] = best
    print(
        f"seed={seed} effect={effect} dropout={dropout} method={method} expressed={expressed}: AUROC {auroc:.3f} "
        f"(Bayes-optimal {best:.3f}), CSC {csc.sum()}, FDP {fdp:.3f} (alpha {ALPHA}), power {power:.2f}, "
        f"non-planted called {fpr:.3f}"
    )
    return auroc, fdp, power, fpr, a


def test_planted_population_recovered_and_fdp_controlled():
    auroc, fdp, power, _, a = run(seed=11, effect=2.5, dropout=0.2)
    assert auroc >= 0.95
    assert fdp <= 1.5 * ALPHA
    assert power > 0.5  # pooled null: measured 0.78 (FDP 0.012) with the Pearson-residual index
    p = a.obs.loc[~a.obs["planted"], "stemness_pvalue"].to_numpy()
    # non-planted cells: conservative, never anti-conservative. The pooled null centres the scores on all
    # malignant cells, planted ones included, so the others sit a little below the null (measured median 0.743)
    assert 0.4 < np.median(p) < 0.85 and np.mean(p <= 0.1) <= 0.1


def test_pearson_index_beats_log_mean_and_equal_weights_on_dropout():
    """Pearson beats the score_genes index; with two sets whose genes all carry the same planted effect,
    Stouffer (sqrt_size) weighting beats giving the 4-gene set half the weight. The default is nonetheless
    ``equal`` (issue 15: the named markers weigh as a component in their own right): with the five tumour-intrinsic
    sets, on the planted tumour of ``planted.py`` (markers and targets raised, the 106-gene CancerSEA set mostly
    not), equal weights gave AUROC 0.987 and calibrated recall 0.670 vs 0.886 and 0.096 with sqrt_size."""
    best = run(seed=2, effect=2.0, dropout=0.3)[0]
    assert best > run(seed=2, effect=2.0, dropout=0.3, method="mean")[0] + 0.02
    assert best > run(seed=2, effect=2.0, dropout=0.3, weighting="equal")[0] + 0.01


def test_lowly_expressed_signature_is_harder_and_the_call_stays_conservative():
    auroc, fdp, _, fpr, _ = run(seed=11, effect=2.5, dropout=0.2, expressed=False)
    assert auroc >= 0.9  # most genes < 0.2 counts per cell (measured 0.946; log-mean index 0.86)
    assert fdp <= 1.5 * ALPHA and fpr <= 0.02


def test_no_planted_cells_means_almost_no_csc():
    _, _, _, fpr, a = run(seed=5, effect=1.0, dropout=0.1)
    assert fpr <= 0.01
    p = a.obs["stemness_pvalue"].to_numpy()
    assert abs(np.mean(p <= 0.1) - 0.1) < 0.04  # calibrated under the global null


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pearson", "mean", "ucell"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("effect", [2.0, 3.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grid(seed, effect, dropout, method):
    """Measured (seeds 1-3, sqrt_size weighting, as in run()): FDP <= 0.05 in every pearson case (alpha 0.1).
    Pearson index AUROC 0.985-0.997 except at 2-fold with 30 % extra dropout: 0.935-0.948, where the
    Bayes-optimal AUROC is 0.963-0.980 (within 0.043). The log-mean index reached 0.86-0.91 there, UCell
    0.79-0.82."""
    auroc, fdp, _, _, a = run(seed, effect, dropout, method=method)
    assert fdp <= 1.5 * ALPHA  # BH controls the expected FDP at alpha x (share of non-planted cells)
    if method == "pearson":
        if dropout == 0.0 or effect == 3.0:
            assert auroc >= 0.98
        else:
            assert auroc >= 0.93 and auroc >= a.uns["bayes_auroc"] - 0.05
    elif method == "mean" and (dropout == 0.0 or effect == 3.0):
        assert auroc >= 0.95
    else:
        assert auroc >= 0.74
