"""Benjamini-Hochberg adjusted p-values in numpy (no scipy.stats import, which costs a step ~1-2 s)."""

from __future__ import annotations

import numpy as np


def bh_fdr(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values, the shape of ``p`` (NaN kept as NaN, not counted among the tests).

    Equal to ``scipy.stats.false_discovery_control(p, method="bh")`` on the finite values (tests/stemness/test_kernels.py).
    """
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    out = np.full(flat.size, np.nan)
    ok = np.flatnonzero(np.isfinite(flat))
    if ok.size == 0:
        return out.reshape(p.shape)
    order = ok[np.argsort(flat[ok], kind="stable")]
    m = ok.size
    q = flat[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out[order] = np.minimum(q, 1.0)
    return out.reshape(p.shape)
