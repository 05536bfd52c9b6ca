"""Cohort (rules in ``cohort.smk``): per-sample tables joined, and tests over patients (never pooled cells).

Public steps: :func:`concat_tables`, :func:`cohort_statistics`. Implementation: ``_statistics``.
"""

from ._steps import cohort_statistics, concat_tables

__all__ = ["cohort_statistics", "concat_tables"]
