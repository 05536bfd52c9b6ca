"""Preprocessing (rules ``load`` -> ``qc`` -> ``embed``, which also annotates): QC, embedding, cell types and
compartments.

Public steps: :func:`qc`, :func:`qc_file`, :func:`embed_sample`, :func:`embed`, :func:`annotate`.
Implementation: ``_qc`` (filters), ``_embed`` (normalise, sketch, HVG/PCA/kNN/Leiden/UMAP), ``_annotate``.
"""

from ._steps import annotate, embed, embed_sample, qc, qc_file

__all__ = ["annotate", "embed", "embed_sample", "qc", "qc_file"]
