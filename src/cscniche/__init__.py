"""cscniche: cancer-stem-cell scoring and immune-niche tables for single-cell tumour data.

The topics mirror the workflow's rule files and are imported on first use (``import cscniche`` alone does not
import scanpy or anndata)::

    import cscniche as cn

    adata = cn.load.load_sample("tumour.h5ad", sample="s1", cell_type_key="celltype")
    adata, qc = cn.preprocess.qc(adata, sample="s1")
    cn.preprocess.embed(adata)
    cn.preprocess.annotate(adata, cell_type_key="celltype")
    cn.stemness.score(adata, sample="s1", scoring=cn.ScoringParams(methods=("mean", "pearson")))
    table = cn.niche.neighbours(adata, sample="s1")

Parameters: one frozen dataclass per config section (:mod:`cscniche._params`), e.g. :class:`ScoringParams`.
"""

from __future__ import annotations

import importlib

from ._errors import InputError
from ._params import (
    AnnotationParams,
    CheckpointsParams,
    CnvParams,
    CrosstalkParams,
    CscParams,
    EmbeddingParams,
    NeighboursParams,
    QcParams,
    ScaleParams,
    ScoringParams,
)

__version__ = "0.1.0"

#: the subpackages, imported lazily on first attribute access
TOPICS = ("load", "preprocess", "stemness", "niche", "cohort", "pl", "report", "demo")

__all__ = [
    "AnnotationParams",
    "CheckpointsParams",
    "CnvParams",
    "CrosstalkParams",
    "CscParams",
    "EmbeddingParams",
    "InputError",
    "NeighboursParams",
    "QcParams",
    "ScaleParams",
    "ScoringParams",
    *TOPICS,
]


def __getattr__(name: str):
    if name in TOPICS:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *TOPICS])
