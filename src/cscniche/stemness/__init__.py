"""Stemness (rules ``cnv``, ``score``, ``project``): malignant call, signature scores, calibrated CSC call.

Public steps: :func:`cnv`, :func:`score`, :func:`project`. Implementation: ``_cnv`` (copy number), ``_score``
(adapters on AnnData: scores, index, calibration, CSC call, pseudobulk), ``_project`` (every cell scored with
the sketch's fits); ``kernels`` holds the numeric kernels (no AnnData), one method per module.
"""

from ._steps import cnv, project, score

__all__ = ["cnv", "project", "score"]
