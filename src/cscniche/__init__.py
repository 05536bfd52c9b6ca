"""cscniche: cancer-stem-cell scoring and immune-niche tables for single-cell tumour data."""

from . import annotate, checkpoints, demo, io, neighbours, preprocess, scoring, stages
from ._errors import InputError

__all__ = ["InputError", "annotate", "checkpoints", "demo", "io", "neighbours", "preprocess", "scoring", "stages"]
__version__ = "0.1.0"
