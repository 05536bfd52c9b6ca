"""Cohort (rules in ``cohort.smk``): per-sample tables joined, and tests over patients (never pooled cells).

Public steps: :func:`write_cohort_table`, :func:`concat_tables`, :func:`cohort_statistics`, :func:`csc_burden_immune`. Implementation: ``_statistics``.
"""

from ._steps import cohort_statistics, concat_tables, csc_burden_immune, write_cohort_table

__all__ = ["cohort_statistics", "concat_tables", "csc_burden_immune", "write_cohort_table"]
