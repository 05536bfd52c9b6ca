"""Import umap-learn and pynndescent with numba's on-disk cache on (issue 18: the fixed cost of each step).

Both libraries decorate their kernels with ``numba.njit`` without ``cache=True`` and pynndescent compiles
many of them eagerly at import, so every process that builds a kNN graph or a UMAP (rules embed,
patient_neighbours, project above 8,192 sketch cells) recompiled them: importing umap took 7.7 s, and
``scanpy.pp.neighbors`` compiled UMAP's fuzzy simplicial set for several seconds more. :func:`import_umap`
imports them once with ``cache=True`` as the default of ``numba.njit``/``numba.jit`` (an explicit ``cache=``
is kept), so later processes load the compiled code from ``__pycache__`` (numba falls back to a user-wide
cache directory where that is read-only): importing umap then took 2.9 s. The compiled code is the same,
and so are the results (tested). Nothing else is changed, and the patch is undone before returning.
"""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def numba_cache_default():
    """Inside the block, ``numba.njit``/``numba.jit`` default to ``cache=True``."""
    import numba

    njit, jit = numba.njit, numba.jit

    def _cached(decorator):
        def wrapper(*args, **kwargs):
            kwargs.setdefault("cache", True)
            return decorator(*args, **kwargs)

        return wrapper

    numba.njit, numba.jit = _cached(njit), _cached(jit)
    try:
        yield
    finally:
        numba.njit, numba.jit = njit, jit


def import_umap() -> None:
    """Import ``umap`` (and with it ``pynndescent``) with numba's cache on, unless already imported."""
    if "umap" in sys.modules:
        return
    with numba_cache_default():
        import umap  # noqa: F401
