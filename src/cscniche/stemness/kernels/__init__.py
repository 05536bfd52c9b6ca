"""Numeric kernels of the stemness scores: numpy/scipy/numba only, no AnnData (the adapters are in ``_score``)."""
