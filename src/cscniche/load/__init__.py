"""Fetch and load (rules ``fetch``, ``load``): one sample's raw counts from any supported format to AnnData.

Public steps: :func:`load_sample` (in memory), :func:`write_sample` (to an ``.h5ad``, streamed when it is one),
:func:`fetch_sample` (remote data into the download cache). Implementation: ``_readers`` (formats, checks),
``_ondisk`` (streamed ``.h5ad``), ``_formats`` (MTX, text, archives), ``_genes`` (identifiers), ``_sources``
(downloads, GEO, CELLxGENE Census).
"""

from ._readers import load_sample, write_sample
from ._sources import fetch_sample

__all__ = ["fetch_sample", "load_sample", "write_sample"]
