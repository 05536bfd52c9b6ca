"""Every scoring kernel by name (one method per module: ``mean``, ``ucell``, ``aucell``, ``potency``, ``stats``).

No AnnData here (the adapter is :mod:`cscniche.stemness._score`). Sparse input is never densified: scores are
numba passes over the CSR rows (set means, UCell) or sparse products computed in chunks of cells.

* :func:`score_genes` - Seurat/scanpy ``score_genes`` (mean of the set minus the mean of expression-binned
  control genes), reproducing scanpy's control-gene draw exactly for the same seed.
* :func:`ucell` - UCell (Andreatta & Carmona 2021): Mann-Whitney U of the set's within-cell ranks, ranks
  above ``max_rank`` capped at ``max_rank`` (as pyucell); one numba pass over the CSR rows, no matrix copy.
* :func:`aucell` - AUCell (Aibar et al. 2017): area under the recovery curve of the set within the top
  ``n_up`` genes of each cell, ordinal ranks (as decoupler).
* :func:`detected_genes`, :func:`gene_count_signature` - CytoTRACE-style potency (Gulati et al. 2020).
* :func:`spearman_with_weights` - the mRNAsi stemness index (Malta et al. 2018).
* :func:`residualise` - a score adjusted for the number of detected genes.
"""

# ruff: noqa: F401 - re-exports
from ._common import (
    _ROW_BLOCK,
    _SCAN_MAX,
    CHUNK,
    _as_csr,
    _clean_chunk,
    _csr_desc_ranks,
    _csr_has_duplicates,
    _rank_csr,
    _row_block,
    set_weights,
)
from .aucell import (
    _aucell_row_sums,
    aucell,
    aucell_n_up,
)
from .mean import (
    _HAVE_NUMBA,
    _csr_set_sums,
    control_genes,
    expression_bins,
    gene_means,
    score_genes,
    set_means,
)
from .potency import (
    _rank01,
    detected_genes,
    gene_count_signature,
    spearman_with_weights,
)
from .stats import (
    _zcols,
    _zfit,
    bh_fdr,
    matched_random_sets,
    minmax,
    random_set_pvalues,
    residualise,
)
from .ucell import (
    _ucell_row_gains,
    _ucell_score,
    ucell,
    ucell_from_transform,
    ucell_transform,
)
