"""Figures for the report (rules in ``report.smk``): data in, :class:`matplotlib.figure.Figure` out.

Select a non-interactive backend (``MPLBACKEND=Agg``) before importing this module in a headless run.
The software-version and configuration report is :mod:`cscniche.report` (no plotting).
"""

from ._figures import (
    COHORT_FIGURES,
    QC_FIGURES,
    SAMPLE_FIGURES,
    burden_scatter,
    checkpoint_dotplot,
    cohort_checkpoints,
    cohort_composition,
    cohort_figures,
    cohort_neighbours,
    crosstalk,
    csc_marker_detection,
    forest,
    neighbour_heatmap,
    placeholder,
    qc_cells,
    qc_figures,
    qc_metrics,
    sample_figures,
    save,
    score_distributions,
    signature_coverage,
    stars,
    tissue_map,
    umap,
)

__all__ = [
    "COHORT_FIGURES",
    "QC_FIGURES",
    "SAMPLE_FIGURES",
    "burden_scatter",
    "checkpoint_dotplot",
    "cohort_checkpoints",
    "cohort_composition",
    "cohort_figures",
    "cohort_neighbours",
    "crosstalk",
    "csc_marker_detection",
    "forest",
    "neighbour_heatmap",
    "placeholder",
    "qc_cells",
    "qc_figures",
    "qc_metrics",
    "sample_figures",
    "save",
    "score_distributions",
    "signature_coverage",
    "stars",
    "tissue_map",
    "umap",
]
