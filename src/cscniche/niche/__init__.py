"""Immune niche (rules in ``niche.smk``): neighbour enrichment, checkpoints, crosstalk, the per-cell export.

Public steps: :func:`neighbours`, :func:`nhood_enrichment`, :func:`patient_neighbours`, :func:`checkpoints`,
:func:`checkpoint_pseudobulk`, :func:`niche_checkpoints` (the three in one read: :func:`checkpoint_tables`, rule
``checkpoints``), :func:`crosstalk`, :func:`export` (and
:func:`neighbourhood_graphs`, :func:`cells_table`). Implementation: ``_graphs`` (kNN/spatial graphs, the
permutation test), ``_checkpoints``, ``_crosstalk`` (LIANA).
"""

from ._steps import (
    cells_table,
    checkpoint_pseudobulk,
    checkpoint_tables,
    checkpoints,
    crosstalk,
    export,
    neighbourhood_graphs,
    neighbours,
    nhood_enrichment,
    niche_checkpoints,
    patient_neighbours,
)

__all__ = [
    "cells_table",
    "checkpoint_pseudobulk",
    "checkpoint_tables",
    "checkpoints",
    "crosstalk",
    "export",
    "neighbourhood_graphs",
    "neighbours",
    "nhood_enrichment",
    "niche_checkpoints",
    "patient_neighbours",
]
