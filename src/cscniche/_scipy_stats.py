"""The :mod:`scipy.stats` functions of the niche steps, imported on first call.

Importing :mod:`scipy.stats` costs ~0.8 s per process on top of anndata (measured with ``python -c``, warm
cache); steps that only read and write tables (``export``) call none of these, so they no longer pay it.
"""

from __future__ import annotations


def false_discovery_control(ps, *, axis=0, method="bh"):
    """:func:`scipy.stats.false_discovery_control`."""
    from scipy.stats import false_discovery_control as f

    return f(ps, axis=axis, method=method)


def mannwhitneyu(x, y, **kwargs):
    """:func:`scipy.stats.mannwhitneyu`."""
    from scipy.stats import mannwhitneyu as f

    return f(x, y, **kwargs)


def spearmanr(a, b=None, **kwargs):
    """:func:`scipy.stats.spearmanr`."""
    from scipy.stats import spearmanr as f

    return f(a, b, **kwargs)


def rankdata(a, **kwargs):
    """:func:`scipy.stats.rankdata`."""
    from scipy.stats import rankdata as f

    return f(a, **kwargs)
