"""cscniche._numba: umap/pynndescent imported with numba's on-disk cache as the default (issue 18)."""

from __future__ import annotations

import numba
from numba.core.caching import NullCache

from cscniche import _numba


def test_cache_is_the_default_inside_the_block_only():
    njit, jit = numba.njit, numba.jit
    with _numba.numba_cache_default():

        @numba.njit
        def plus_one(x):  # pragma: no cover - compiled by numba
            return x + 1

        explicit = numba.njit(cache=False)(lambda x: x)
    assert numba.njit is njit and numba.jit is jit  # the patch is undone
    assert not isinstance(plus_one._cache, NullCache) and plus_one(1) == 2
    assert isinstance(explicit._cache, NullCache)  # an explicit cache=False is kept
    after = numba.njit(lambda x: x)
    assert isinstance(after._cache, NullCache)  # outside the block numba's own default (no cache)


def test_import_umap_leaves_numba_as_it_was():
    njit = numba.njit
    _numba.import_umap()
    import umap

    assert numba.njit is njit and hasattr(umap, "UMAP")
