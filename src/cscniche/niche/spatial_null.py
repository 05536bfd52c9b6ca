"""CSC vs non-CSC immune neighbourhoods with a null that keeps spatial structure (issue 16, item 1).

Question asked, per immune cell type ``t``: is the share of ``t`` among the physical neighbours of CSC
(stem-like malignant cells) different from its share among the neighbours of non-CSC malignant cells?

Statistic
---------
For each immune type ``t``: ``difference = csc_fraction - noncsc_fraction`` where ``csc_fraction`` is the
number of (CSC -> type ``t``) neighbour links divided by all neighbour links of CSC (pooled over CSC), and
``noncsc_fraction`` the same for non-CSC malignant cells. The statistic is a ratio of pooled shares, so it
does not depend on how many cells are labelled CSC (which varies under the spatial null, see below).

Nulls (``null=``)
-----------------
``"patch_regrowth"`` (default)
    The CSC *patches* are re-placed, each keeping its number of cells. A patch is a connected component of
    two or more CSC among the malignant cells' 6 nearest malignant neighbours, in a labelling that is
    clustered: its number of CSC-CSC neighbour links is above that of each of 19 random labellings with the
    same CSC count. A labelling that is not clustered has no patch: all its CSC are scattered and the draws
    are exactly the label permutation's (random labels form groups too, at 30 % CSC half of them touch
    another, and re-growing those as compact balls made the null far more clumped than the data: no power).
    Each draw re-grows the patches, largest first, as the ``m`` malignant cells nearest to a random
    malignant seed that are not CSC yet, and then places the scattered CSC uniformly among the remaining
    malignant cells (:class:`PatchRegrowth`). Immune cells, all positions and the tissue stay as they are.
    The CSC count is exact in every draw, so no draw is redrawn.

    Assumes: under "no association", a CSC patch of ``m`` cells could have grown around any malignant cell
    (a clone or a program spreading over its ``m`` nearest malignant cells), independently of the immune
    pattern. Then the observed labelling is one draw of that process and p is valid whatever the spatial
    autocorrelation of the immune cells. Because a patch is re-grown in *cells*, it follows the local
    density: on the sparse, immune-rich tumour margin a re-grown patch spreads over a larger area, as a
    real patch of ``m`` cells there would. This is why it replaced the field shift as the default: on the
    MERFISH lung slide, 30-cell pseudo-CSC patches on the margin moved as an *area* into the dense interior
    covered 112 malignant cells and few immune neighbours, and the field shift gave p < 0.05 too often
    (Myeloid 6.7 %, 30-cell patches 7.9 %; measured numbers for both nulls are in ``docs/methods.md``).

    Where it fails or is weak:

    * Patch *shape* is not kept: a re-grown patch is the compact ball of its ``m`` nearest malignant cells.
      An elongated or ragged observed patch has more links to its surroundings than a ball of the same size
      in the same place; the pooled-share statistic partly absorbs that (links to non-CSC malignant cells are
      in the denominator of both groups). Score-like labellings (thresholded smooth random fields) on the
      real slides stayed calibrated (see ``benchmarks/validate_spatial_null.py``).
    * The rarer label is re-grown: when CSC are more than half of the malignant cells (a marker phenotype
      can label 96 % of the demo's tumour), the non-CSC form the patches and the CSC are the background.
      Re-growing the majority instead made one giant patch whose complement, the few non-CSC, became one
      compact group at the tumour's edge in every draw, and every immune type came out at p = 0.0002 with
      |log2 enrichment| < 0.6 (demo, phenotype definition, 1,151 of 1,199 malignant cells).
    * In a clustered labelling every group of two or more CSC is re-grown as a compact ball, also groups
      that chance made (conservative for those). Two patches that touch count as one; re-grown patches may
      touch.
    * Seeds are uniform over malignant cells, so a cell on the tumour's edge is inside a re-grown patch less
      often than an interior cell (a 40 x 40 lattice: 0.77x, 0.69x, 0.48x for patches of 20, 100 and 400
      cells). Under labels that put every cell at equal risk, a large patch on the edge is then more
      unusual than it should be. The real-slide checks (margin patches of 30-160 cells, score-like labels)
      stayed calibrated; large patches at a margin are the case to read with care.
    * Shared gradients, density differences and one slide being one observation: as for the field shift
      below. A CSC patch denser than the rest of the tumour re-grows elsewhere with the same count over a
      larger area; read a depletion together with ``csc_density`` > ``noncsc_density`` as "denser".

``"spatial_shift"``
    The CSC label *field* is moved rigidly against the rest of the tissue, which stays where it is (every
    cell keeps its position, every immune cell its type, so the immune pattern, its patches, and the
    density of the tissue are untouched). The field is the CSC indicator of the nearest malignant cell,
    rasterised on a grid (spacing: half the median malignant nearest-neighbour distance) over the
    malignant cells' bounding box, padded by ``r_in``; grid points farther than ``r_in`` (three median
    malignant nearest-neighbour distances) from any malignant cell are outside the tumour and carry
    "non-CSC". Each permutation draws a uniform toroidal shift over the padded box (and, with
    ``rotate=True``, a uniform rotation and a random reflection about the box centre); each malignant
    cell takes the label of the field at its back-transformed position. CSC patches thus stay patches of
    the same shape, area and orientation, at a random place. Draws that move less than ``min_on_tumour``
    (default 0.8) of the CSC field's *area* onto tumour (grid points within ``r_in`` of a malignant cell)
    are discarded and redrawn, as are draws with no CSC or no non-CSC, so the null is conditional on the
    patches landing (almost) wholly on tumour. The condition is on area, not on the CSC count: a dense CSC
    patch moved onto normally packed tumour covers fewer cells, and conditioning on the count (tried
    first) kept only draws onto other dense places and hid the demo's niches. Rotation is off by default:
    on an elongated tumour (the CosMx slide) a rotated patch no longer fits the tumour, and with rotation
    the CosMx false-positive share per immune type reached 0.1-0.15 in a 45-labelling check.

    Assumes: under "no association", the CSC field is *stationary* over the malignant region (a patch
    could have formed anywhere in the tumour) and independent of the immune pattern.
    Then the observed placement is one draw among the shifted ones, and p is valid whatever the spatial
    autocorrelation of either pattern.

    Where it fails or is weak:

    * Shared gradients are not "independence": if CSC and an immune type both sit at the invasive margin,
      or both avoid necrosis, the association is real at the scale of the tissue and the null (which moves
      CSC off the margin) will call it significant. The null tests co-location, not mechanism.
    * Irregular outlines and holes: draws landing mostly off tumour are discarded, the rest still lose
      the cells that fall off, and the CSC count varies with density; the pooled-share statistic
      tolerates that. A slide whose tumour is barely larger than the CSC area has few distinct
      placements: low power, coarse p, and a null dominated by the tumour's interior or edge.
    * Power is that of one slide: with few CSC patches and patchy immune infiltration, a true niche
      looks like one coincidence among the shifted placements (measured power for a single planted patch
      is low; it rises with the number of independent patches, see the benchmark).
    * Rotations of a non-round tumour and the torus seams create label configurations that cannot occur
      in the tissue (patches cut at a seam). These are rare when the tumour is much larger than a patch.
    * Density is not exclusion, and this null does not change that: it keeps the cells in place, so a CSC
      patch packed denser than the rest of the tumour has fewer immune cells among its ``k`` nearest
      neighbours for geometric reasons, and the shifted labels land on normally packed cells. The table
      reports ``csc_density`` and ``noncsc_density`` (cells per unit area around each group, from the
      ``k``-th neighbour distance or the radius count) beside the enrichment; read a depletion together
      with a density excess as "denser", not "excluded". A ``radius`` neighbourhood makes the comparison
      per area.
    * One slide is one observation of two patterns: this null removes the anti-conservativeness of
      treating cells as exchangeable, but p stays a within-sample statement; inference about patients
      needs several samples (issue 16, item 2).
    * Rasterisation: the field is read off a grid, so a cell on a patch border may take its neighbour's
      label; the identity draw reproduces the observed labels of all malignant cells on the simulated and
      real slides checked (agreement 1.000, see ``benchmarks/validate_spatial_null.py``).

    * A patch that hugs a curved tumour margin has no shifted copy of the same shape on the margin: its
      accepted copies land mostly in the interior (see ``"patch_regrowth"`` for the measured consequence).

``"label_permutation"``
    The CSC label is permuted among the malignant cells of the sample (CSC count fixed): cells are
    treated as exchangeable. Valid when CSC are scattered, anti-conservative when CSC form patches and
    immune infiltration is patchy (the old default of :func:`cscniche.neighbours.neighbour_enrichment`).

p is two-sided: ``min(1, 2 * min(P(null >= obs), P(null <= obs)))`` with the ``+1`` permutation
correction; ``fdr`` is Benjamini-Hochberg over the immune types of the table.

This module imports nothing from the rest of cscniche (numpy, scipy, pandas only).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.spatial import cKDTree

from .._scipy_stats import false_discovery_control

NULLS = ("spatial_shift", "patch_regrowth", "label_permutation")
DEFAULT_NULL = "patch_regrowth"
PSEUDOCOUNT = 0.5
COLUMNS = [
    "sample",
    "neighbourhood",
    "null",
    "immune_type",
    "n_csc",
    "n_noncsc",
    "observed",
    "expected",
    "csc_fraction",
    "noncsc_fraction",
    "difference",
    "null_mean_difference",
    "log2_enrichment",
    "z",
    "p",
    "fdr",
    "n_permutations",
    "csc_density",
    "noncsc_density",
    "note",
]
_CHUNK_VALUES = 2_000_000  # permutations x malignant cells held at once
_NEAREST = 48  # patch regrowth: nearest malignant cells kept per cell (larger patches query the tree)


def spatial_graph(coords, *, k: int = 10, radius: float | None = None) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Binary adjacency (row i: neighbours of cell i, self excluded) and local cell density per cell.

    ``k`` nearest other cells, or every cell within ``radius`` when given. Density is cells per unit area:
    ``k / (pi d_k^2)`` with ``d_k`` the distance to the k-th neighbour, or ``count / (pi radius^2)``.
    """
    xy = np.asarray(coords, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] < 2 or not np.all(np.isfinite(xy)):
        raise ValueError("spatial coordinates must be a finite n x 2 array")
    xy = xy[:, :2]
    n = xy.shape[0]
    tree = cKDTree(xy)
    if radius is not None:
        pairs = tree.query_pairs(float(radius), output_type="ndarray")
        i = np.concatenate([pairs[:, 0], pairs[:, 1]])
        j = np.concatenate([pairs[:, 1], pairs[:, 0]])
        adj = sparse.csr_matrix((np.ones(i.size, dtype=np.float64), (i, j)), shape=(n, n))
        density = np.asarray(adj.sum(axis=1)).ravel() / (np.pi * float(radius) ** 2)
        return adj, density
    kk = int(min(k, n - 1))
    if kk < 1:
        return sparse.csr_matrix((n, n)), np.zeros(n)
    d, idx = tree.query(xy, kk + 1)
    keep = idx != np.arange(n)[:, None]
    full = keep.all(axis=1)  # duplicated coordinates: self not among the k+1, drop the farthest
    keep[full, -1] = False
    rows = np.repeat(np.arange(n), kk)
    adj = sparse.csr_matrix((np.ones(rows.size), (rows, idx[keep])), shape=(n, n))
    dk = np.where(keep, d, 0).max(axis=1)
    with np.errstate(divide="ignore"):
        density = np.where(dk > 0, kk / (np.pi * np.maximum(dk, 1e-300) ** 2), np.inf)
    return adj, density


class ShiftField:
    """The CSC label field of one sample, rasterised, for toroidal shifts / rotations (see module doc)."""

    def __init__(self, mal_xy: np.ndarray, is_csc: np.ndarray, *, max_grid: int = 4_000_000):
        self.xy = np.asarray(mal_xy, dtype=np.float64)[:, :2]
        tree = cKDTree(self.xy)
        d, _ = tree.query(self.xy, 2)
        spacing = float(np.median(d[:, 1])) if len(self.xy) > 1 else 1.0
        spacing = spacing if spacing > 0 else 1.0
        self.r_in = 3.0 * spacing
        lo = self.xy.min(axis=0) - self.r_in
        hi = self.xy.max(axis=0) + self.r_in
        h = spacing / 2.0
        while np.prod(np.ceil((hi - lo) / h)) > max_grid:
            h *= 1.25
        self.h, self.lo = h, lo
        self.shape = np.ceil((hi - lo) / h).astype(int)
        self.period = self.shape * h
        self.centre = lo + self.period / 2
        gx, gy = np.meshgrid(np.arange(self.shape[0]), np.arange(self.shape[1]), indexing="ij")
        centres = lo + (np.column_stack([gx.ravel(), gy.ravel()]) + 0.5) * h
        dist, j = tree.query(centres)
        inside = dist <= self.r_in
        self.grid = (inside & np.asarray(is_csc, dtype=bool)[j]).reshape(self.shape)
        self.inside = inside.reshape(self.shape)
        self.nearest = np.where(inside, j, -1).reshape(self.shape)  # nearest malignant cell; -1 off tumour
        csc_cells = centres[self.grid.ravel()]  # grid-cell centres of the CSC field (its area)
        self.csc_cells = csc_cells[:: max(1, int(np.ceil(len(csc_cells) / 400)))]  # <= ~400, evenly strided

    def _index(self, x, y):
        ix = np.floor((x - self.lo[0]) / self.h).astype(np.int64) % self.shape[0]
        iy = np.floor((y - self.lo[1]) / self.h).astype(np.int64) % self.shape[1]
        return ix, iy

    def on_tumour(self, shifts: np.ndarray, angles: np.ndarray, flips: np.ndarray) -> np.ndarray:
        """Share of the CSC field's area that each (shift, angle, reflection) moves onto tumour."""
        if len(self.csc_cells) == 0:
            return np.zeros(len(shifts))
        rel = self.csc_cells - self.centre
        c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
        u = rel[None, :, 0] + shifts[:, :1]
        v = rel[None, :, 1] + shifts[:, 1:2]
        x = c * u + s * v  # inverse rotation
        y = -s * u + c * v
        x = np.where(flips[:, None], -x, x)
        ix, iy = self._index(x + self.centre[0], y + self.centre[1])
        return self.inside[ix, iy].mean(axis=1)

    def labels(self, shifts: np.ndarray, angles: np.ndarray, flips: np.ndarray) -> np.ndarray:
        """CSC labels (draws x malignant cells) of the field moved by each (shift, angle, reflection)."""
        ix, iy = self._moved(shifts, angles, flips)
        return self.grid[ix, iy]

    def _moved(self, shifts: np.ndarray, angles: np.ndarray, flips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices (draws x malignant cells) each malignant cell reads under each back-transform."""
        rel = self.xy - self.centre
        c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
        x = np.where(flips[:, None], -rel[None, :, 0], rel[None, :, 0])
        y = rel[None, :, 1]
        sx = c * x - s * y + self.centre[0] - shifts[:, :1]
        sy = s * x + c * y + self.centre[1] - shifts[:, 1:2]
        return self._index(sx, sy)

    def sources(self, shifts: np.ndarray, angles: np.ndarray, flips: np.ndarray) -> np.ndarray:
        """Malignant cell (index, -1 off tumour) whose value each malignant cell takes under each draw.

        The same back-transform as :meth:`labels`, reading the nearest-malignant-cell grid: moves a continuous
        field (e.g. stemness) rigidly against the tissue.
        """
        ix, iy = self._moved(shifts, angles, flips)
        return self.nearest[ix, iy]

    def identity_agreement(self, is_csc: np.ndarray) -> float:
        """Share of malignant cells whose rasterised label (no shift) equals their own label."""
        lab = self.labels(np.zeros((1, 2)), np.zeros(1), np.zeros(1, dtype=bool))[0]
        return float(np.mean(lab == np.asarray(is_csc, dtype=bool)))


def _null_labels(null, is_csc, mal_xy, n_permutations, rng, rotate, field=None, min_on_tumour=0.8):
    """Yield chunks of null CSC labels (draws x malignant cells, bool), ``n_permutations`` valid rows in all."""
    n = is_csc.size
    chunk = max(1, _CHUNK_VALUES // max(n, 1))
    if null == "label_permutation":
        k = int(is_csc.sum())
        done = 0
        while done < n_permutations:
            b = min(chunk, n_permutations - done)
            keys = rng.random((b, n))
            pick = np.argpartition(keys, k - 1, axis=1)[:, :k]
            lab = np.zeros((b, n), dtype=bool)
            np.put_along_axis(lab, pick, True, axis=1)
            done += b
            yield lab
        return
    if null == "patch_regrowth":
        # the rarer label forms the patches, the other is the background they sit in: with CSC the majority
        # (a marker phenotype can label 90 % of a tumour), the non-CSC are re-grown and the CSC are the rest
        flip = bool(is_csc.sum() > n / 2)
        regrow = PatchRegrowth(mal_xy, ~is_csc if flip else is_csc)
        done = 0
        while done < n_permutations:
            b = min(chunk, n_permutations - done)
            done += b
            lab = regrow.labels(b, rng)
            yield ~lab if flip else lab
        return
    field = field if field is not None else ShiftField(mal_xy, is_csc)
    done, tries = 0, 0
    while done < n_permutations and tries < 200:
        tries += 1
        b = min(chunk, n_permutations - done)
        shifts = rng.random((b, 2)) * field.period
        angles = rng.random(b) * 2 * np.pi if rotate else np.zeros(b)
        flips = rng.random(b) < 0.5 if rotate else np.zeros(b, dtype=bool)
        ok = field.on_tumour(shifts, angles, flips) >= min_on_tumour
        lab = field.labels(shifts[ok], angles[ok], flips[ok])
        m = lab.sum(axis=1)
        lab = lab[(m > 0) & (m < n)]
        done += lab.shape[0]
        if lab.shape[0]:
            yield lab


class PatchRegrowth:
    """CSC patches of a sample re-grown, each with its cell count, around random malignant cells.

    Groups are the connected components of the CSC among the malignant cells' ``k`` nearest malignant
    neighbours (union of both directions). Random labels form groups too (at 30 % CSC half of them touch
    another CSC, and near 50 % one group spans the tumour), and re-growing those as compact balls makes the
    null far more clumped than the data. So the labelling is first checked for clustering: its join count
    (kNN links between two CSC) against those of ``n_reference`` random labellings with the same CSC count.
    Clustered (above all of them): every group of two or more CSC is a *patch*, the rest are scattered. Not
    clustered: every CSC is scattered, and the draws are exactly the label permutation's. A draw re-places
    the patches largest first, each as the ``m`` malignant cells nearest to a random malignant seed that
    are not yet CSC, and then the scattered CSC uniformly among the remaining malignant cells. The CSC
    count is exact; a re-grown patch may touch another. The patch shape becomes the local ``m``-nearest-cell
    ball, so patches follow the local density (a patch re-grown where malignant cells are sparse covers a
    larger area).
    """

    def __init__(self, mal_xy: np.ndarray, is_csc: np.ndarray, *, k: int = 6, n_reference: int = 19):
        self.xy = np.asarray(mal_xy, dtype=np.float64)[:, :2]
        self.n = len(self.xy)
        is_csc = np.asarray(is_csc, dtype=bool)
        self.tree = cKDTree(self.xy)
        self._nbr = None
        kk = int(min(k, self.n - 1))
        n_csc = int(is_csc.sum())
        self.join_count, self.join_count_random = 0, np.zeros(0)
        self.sizes, self.n_single, self.clustered = np.zeros(0, dtype=int), n_csc, False
        if kk < 1 or n_csc < 2:
            return
        knn = np.atleast_2d(self.tree.query(self.xy, kk + 1)[1])[:, 1:]
        ref = np.random.default_rng(n_csc)  # random labellings with the same count: fixed, per CSC count
        self.join_count = int(is_csc[knn[is_csc]].sum())
        self.join_count_random = np.array(
            [(lab := _random_labels(ref, self.n, n_csc))[knn[lab]].sum() for _ in range(n_reference)]
        )
        self.clustered = bool(self.join_count > self.join_count_random.max())
        if self.clustered:
            sizes = _group_sizes(knn, is_csc)
            self.sizes = np.sort(sizes[sizes > 1])[::-1]
            self.n_single = n_csc - int(self.sizes.sum())

    def labels(self, b: int, rng: np.random.Generator) -> np.ndarray:
        """``b`` re-grown labellings (draws x malignant cells, bool)."""
        out = np.zeros((b, self.n), dtype=bool)
        if self.sizes.size:
            if self._nbr is None:  # each malignant cell's nearest malignant cells
                self._nbr = np.atleast_2d(self.tree.query(self.xy, min(self.n, _NEAREST))[1]).reshape(self.n, -1)
            seeds = rng.integers(self.n, size=(b, self.sizes.size))
            placed = 0
            for j, m in enumerate(self.sizes):  # largest first; all draws at once
                near = self._nbr[seeds[:, j]]  # draws x nearest cells of each draw's seed
                short = (~out[np.arange(b)[:, None], near]).sum(axis=1) < m
                if short.any():  # large patch or crowded neighbourhood: the tree gives enough cells
                    q = min(self.n, int(m) + placed)  # at most `placed` of them are taken
                    near_s = np.atleast_2d(self.tree.query(self.xy[seeds[short, j]], q)[1]).reshape(-1, q)
                    _take_first_free(out, np.flatnonzero(short), near_s, m)
                _take_first_free(out, np.flatnonzero(~short), near[~short], m)
                placed += int(m)
        if self.n_single:
            keys = rng.random((b, self.n))
            keys[out] = 2.0  # already CSC: never picked
            pick = np.argpartition(keys, self.n_single - 1, axis=1)[:, : self.n_single]
            np.put_along_axis(out, pick, True, axis=1)
        return out


def _take_first_free(out: np.ndarray, rows: np.ndarray, near: np.ndarray, m: int) -> None:
    """For each row ``rows[i]``, mark the first ``m`` cells of ``near[i]`` that are not yet marked."""
    if rows.size == 0:
        return
    free = ~out[rows[:, None], near]
    r, c = np.nonzero(free & (np.cumsum(free, axis=1) <= m))
    out[rows[r], near[r, c]] = True


def _random_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    lab = np.zeros(n, dtype=bool)
    lab[rng.permutation(n)[:k]] = True
    return lab


def _group_sizes(knn: np.ndarray, is_csc: np.ndarray) -> np.ndarray:
    """Sizes of the connected components of the labelled cells in the (symmetrised) kNN graph."""
    from scipy.sparse.csgraph import connected_components

    c = np.flatnonzero(is_csc)
    pos = np.full(len(is_csc), -1)
    pos[c] = np.arange(c.size)
    j = pos[knn[c]].ravel()
    i = np.repeat(np.arange(c.size), knn.shape[1])
    keep = j >= 0
    g = sparse.csr_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(c.size, c.size))
    return np.bincount(connected_components(g, directed=True, connection="weak")[1])


def _note_frame(sample, neighbourhood, null, note):
    row = {c: np.nan for c in COLUMNS}
    row.update(sample=sample, neighbourhood=neighbourhood, null=null, immune_type="", note=note)
    return pd.DataFrame([row], columns=COLUMNS)


def spatial_neighbour_enrichment(
    coords,
    cell_type,
    compartment,
    csc,
    malignant=None,
    *,
    k: int = 10,
    radius: float | None = None,
    adj: sparse.spmatrix | None = None,
    null: str = DEFAULT_NULL,
    n_permutations: int = 999,
    rotate: bool = False,
    min_on_tumour: float = 0.8,
    seed: int = 0,
    sample: str = "",
    neighbourhood: str = "spatial",
) -> pd.DataFrame:
    """Share of each immune type among the spatial neighbours of CSC vs non-CSC malignant cells.

    Parameters
    ----------
    coords
        n x 2 cell coordinates of one sample.
    cell_type, compartment, csc
        Per-cell type labels, compartment (cells with ``compartment == 'immune'`` that are not malignant
        are counted, by ``cell_type``) and CSC flag (read on malignant cells only).
    malignant
        The malignant cells; ``compartment == 'malignant'`` when ``None``.
    k, radius
        Neighbourhood: ``k`` nearest other cells, or all cells within ``radius`` (coordinate units).
    adj
        A precomputed n x n adjacency (row i: neighbours of i) to use instead; densities are then NaN.
    null
        ``"patch_regrowth"`` (default: each CSC patch re-grown with its cell count around a random malignant
        cell), ``"spatial_shift"`` (rigid random shift, optionally rotation, of the CSC label field, immune
        cells in place) or ``"label_permutation"`` (CSC label permuted among malignant cells).
    n_permutations
        Null draws; the same ``seed`` gives the same table.
    rotate
        Spatial null: random rotation and reflection as well as the toroidal shift.
    min_on_tumour
        Spatial null: keep only draws that move at least this share of the CSC field's area onto tumour
        (0 keeps every draw with CSC and non-CSC).

    Returns
    -------
    One row per immune type (see :data:`COLUMNS`): ``observed`` (CSC -> type links), ``expected`` (links
    CSC would have with the non-CSC composition: ``noncsc_fraction`` x CSC links), ``csc_fraction``,
    ``noncsc_fraction``, their ``difference`` (the test statistic), the null's mean difference,
    ``log2_enrichment = log2((observed + 0.5) / (expected + 0.5))``, ``z`` of the difference against the
    null, two-sided permutation ``p``, BH ``fdr`` over the table, ``n_permutations`` (valid draws),
    ``csc_density`` / ``noncsc_density`` (mean local cells per unit area of each group) and ``note``.
    A single row with a ``note`` when there is no malignant, CSC, non-CSC or immune cell.
    """
    if null not in NULLS:
        raise ValueError(f"null must be one of {NULLS}, not {null!r}")
    xy = np.asarray(coords, dtype=np.float64)
    cell_type = np.asarray(cell_type).astype(str)
    compartment = np.asarray(compartment).astype(str)
    csc = np.asarray(csc, dtype=bool)
    mal = compartment == "malignant" if malignant is None else np.asarray(malignant, dtype=bool)
    imm = (compartment == "immune") & ~mal
    if not (len(xy) == len(cell_type) == len(compartment) == len(csc) == len(mal)):
        raise ValueError("coords, cell_type, compartment, csc and malignant must have one entry per cell")
    n_csc = int((csc & mal).sum())
    n_mal = int(mal.sum())
    for cond, note in (
        (n_mal == 0, "no malignant cells"),
        (imm.sum() == 0, "no immune cells"),
        (n_csc == 0, "no CSC"),
        (n_csc == n_mal, "no non-CSC malignant cells"),
    ):
        if cond:
            return _note_frame(sample, neighbourhood, null, note)
    if adj is None:
        adj, density = spatial_graph(xy, k=k, radius=radius)
    else:
        adj, density = sparse.csr_matrix(adj), np.full(len(xy), np.nan)
    types, codes = np.unique(cell_type[imm], return_inverse=True)
    rows_imm = np.flatnonzero(imm)
    onehot = sparse.csr_matrix((np.ones(rows_imm.size), (rows_imm, codes)), shape=(len(xy), len(types)))
    adj_mal = adj[mal]
    m = np.asarray((adj_mal @ onehot).todense())
    nb = np.asarray(adj_mal.sum(axis=1)).ravel()
    m_all = np.column_stack([m, nb])  # last column: all neighbour links
    total = m_all.sum(axis=0)
    is_csc = csc[mal]

    def diff(csc_counts):  # rows: labellings; columns: types + total
        non = total - csc_counts
        with np.errstate(divide="ignore", invalid="ignore"):
            a = csc_counts[:, :-1] / csc_counts[:, -1:]
            b = non[:, :-1] / non[:, -1:]
        return a - b, a, b

    obs_counts = m_all[is_csc].sum(axis=0)[None, :]
    d_obs, f_csc, f_non = (x[0] for x in diff(obs_counts))
    rng = np.random.default_rng(seed)
    nulls = [
        diff(lab.astype(np.float64) @ m_all)[0]
        for lab in _null_labels(null, is_csc, xy[mal], n_permutations, rng, rotate, min_on_tumour=min_on_tumour)
    ]
    d_null = np.vstack(nulls) if nulls else np.zeros((0, len(types)))
    d_null = d_null[np.all(np.isfinite(d_null), axis=1)]
    b = d_null.shape[0]
    if b == 0:
        return _note_frame(sample, neighbourhood, null, "no valid null draw (CSC field covers the tumour?)")
    tol = 1e-12
    hi = (1 + (d_null >= d_obs - tol).sum(axis=0)) / (b + 1)
    lo = (1 + (d_null <= d_obs + tol).sum(axis=0)) / (b + 1)
    p = np.minimum(1.0, 2 * np.minimum(hi, lo))
    mu, sd = d_null.mean(axis=0), d_null.std(axis=0)
    z = np.where(sd > 0, (d_obs - mu) / np.where(sd > 0, sd, 1.0), 0.0)
    observed = obs_counts[0, :-1]
    expected = f_non * obs_counts[0, -1]
    dens_mal = density[mal]
    out = pd.DataFrame(
        {
            "sample": sample,
            "neighbourhood": neighbourhood,
            "null": null,
            "immune_type": types,
            "n_csc": n_csc,
            "n_noncsc": n_mal - n_csc,
            "observed": observed,
            "expected": expected,
            "csc_fraction": f_csc,
            "noncsc_fraction": f_non,
            "difference": d_obs,
            "null_mean_difference": mu,
            "log2_enrichment": np.log2((observed + PSEUDOCOUNT) / (expected + PSEUDOCOUNT)),
            "z": z,
            "p": p,
            "fdr": false_discovery_control(p, method="bh"),
            "n_permutations": b,
            "csc_density": float(np.mean(dens_mal[is_csc])),
            "noncsc_density": float(np.mean(dens_mal[~is_csc])),
            "note": "",
        }
    )
    return out[COLUMNS]
