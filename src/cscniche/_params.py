"""Parameters as frozen dataclasses, one per config section: the one source of the defaults.

Each class mirrors a section of ``config/config.yaml`` (and ``config/schemas/config.schema.yaml``, whose
``default`` values a test holds equal to these). Build one from a config section with
:meth:`Params.from_mapping`, which rejects an unknown key with a message naming it and the closest known key::

    from cscniche import ScoringParams
    params = ScoringParams.from_mapping({"methods": ["mean", "pearson"], "stemness_method": "pearson"})
    cn.stemness.score(adata, sample="s1", scoring=params)
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

CSC_MARKERS = ("PROM1", "THY1", "CD44", "EPCAM")

#: default checkpoint axes: (axis, ligand complex, receptor complex) in LIANA's notation (subunits joined by _)
DEFAULT_AXES = (
    {"axis": "PD-L1/PD-1", "ligand": "CD274", "receptor": "PDCD1"},
    {"axis": "PD-L2/PD-1", "ligand": "PDCD1LG2", "receptor": "PDCD1"},
    {"axis": "CD80/CTLA-4", "ligand": "CD80", "receptor": "CTLA4"},
    {"axis": "CD86/CTLA-4", "ligand": "CD86", "receptor": "CTLA4"},
    {"axis": "CD47/SIRPA", "ligand": "CD47", "receptor": "SIRPA"},
    {"axis": "CD200/CD200R1", "ligand": "CD200", "receptor": "CD200R1"},
    {"axis": "HLA-E/NKG2A", "ligand": "HLA-E", "receptor": "KLRC1_KLRD1"},
    {"axis": "Galectin-9/TIM-3", "ligand": "LGALS9", "receptor": "HAVCR2"},
    {"axis": "PVR/TIGIT", "ligand": "PVR", "receptor": "TIGIT"},
    {"axis": "NECTIN2/TIGIT", "ligand": "NECTIN2", "receptor": "TIGIT"},
    {"axis": "MIF/CD74", "ligand": "MIF", "receptor": "CD74"},
)


def _frozen(value):
    """Lists (YAML sequences) as tuples, so that a section object is immutable throughout."""
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Params:
    """Base of the section classes: :meth:`from_mapping` and :meth:`to_dict`."""

    section: ClassVar[str] = ""

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, /, **overrides) -> Params:
        """The section object of ``mapping`` (a config section) updated with ``overrides``.

        Raises
        ------
        TypeError
            When a key is not a parameter of the section (the message names the key and the closest known one).
        """
        values = {**(mapping or {}), **overrides}
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known, n=1)
                hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise TypeError(
                f"unknown key(s) in config section '{cls.section}': {', '.join(hints)}; known keys: {', '.join(known)}"
            )
        return cls(**{k: _frozen(v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (tuples as lists), as they appear in the config."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in dataclasses.fields(self)
        }


@dataclass(frozen=True)
class DownloadParams(Params):
    """``download``: where GEO series are fetched from and how often a download is retried."""

    section: ClassVar[str] = "download"
    geo_base: str = "https://ftp.ncbi.nlm.nih.gov/geo/series"
    retries: int = 3


@dataclass(frozen=True)
class GenesParams(Params):
    """``genes``: an optional gene-identifier map (empty = none)."""

    section: ClassVar[str] = "genes"
    map: str = ""


@dataclass(frozen=True)
class QcParams(Params):
    """``qc``: per-cell thresholds (adaptive per sample or fixed), doublets, genes, library size after normalisation."""

    section: ClassVar[str] = "qc"
    adaptive: bool = True
    n_mads: float = 5
    n_mads_high: float | None = None
    min_genes: int = 200
    min_counts: int = 500
    max_pct_mt: float = 20
    min_cells: int = 0
    doublets: str = "remove"
    expected_doublet_rate: float = 0.05
    target_sum: float = 10000


@dataclass(frozen=True)
class ScaleParams(Params):
    """``scale``: cells analysed per sample (a sketch above it; every cell is projected). ``spatial_sketch``:
    how a sample with coordinates is sketched, ``region`` (the ``max_cells`` cells nearest the slide's centre:
    physical neighbourhoods kept) or ``uniform`` (a uniform sample: neighbourhoods widen)."""

    section: ClassVar[str] = "scale"
    max_cells: int | None = 100000
    spatial_sketch: str = "region"


@dataclass(frozen=True)
class EmbeddingParams(Params):
    """``embedding``: HVGs, PCA, kNN graph, Leiden clusters and UMAP."""

    section: ClassVar[str] = "embedding"
    n_top_genes: int = 2000
    n_pcs: int = 30
    n_neighbors: int = 15
    resolution: float = 1.0
    umap: bool = True


@dataclass(frozen=True)
class AnnotationParams(Params):
    """``annotation``: the marker table and the compartment rules."""

    section: ClassVar[str] = "annotation"
    markers: str = "cscniche:markers.tsv"
    compartments: str = "cscniche:compartments_anchored.tsv"


@dataclass(frozen=True)
class ScoringParams(Params):
    """``scoring``: gene sets, scoring methods and the stemness index."""

    section: ClassVar[str] = "scoring"
    gene_sets: tuple[str, ...] = ("cscniche:genesets/csc_tumour_intrinsic.gmt",)
    stemness_sets: tuple[str, ...] = ()  # empty: CSC_MARKERS and every non-covariate set of the GMT files
    covariate_sets: tuple[str, ...] = ("DISSOCIATION_IEG", "CELL_CYCLE_S", "CELL_CYCLE_G2M")
    marker_panel: str = "liver"
    marker_panels: str = "cscniche:marker_panels.tsv"
    min_fraction_present: float = 0.25
    ctrl_size: int = 50
    markers: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("mean", "ucell", "aucell", "pearson")
    mean_engine: str = "fast"
    ucell_max_rank: int = 1500
    aucell_n_up: int | None = None
    stemness_method: str = "pearson"
    pearson_theta: float = 100
    index_weighting: str = "equal"
    mrnasi_weights: str = ""
    pseudobulk_methods: tuple[str, ...] = ("ssgsea", "gsva")


@dataclass(frozen=True)
class CscParams(Params):
    """``csc``: CSC definitions side by side (``calibrated``: pooled-null BH-FDR <= ``alpha``; ``phenotype``:
    malignant cells positive for ``phenotype``; ``quantile``: top of the index); the first is the primary one.

    ``rule`` is the former single call, kept as an alias: ``fdr`` (= ``calibrated``) or ``quantile`` puts that
    definition first; empty (the default) leaves ``definitions`` as given.
    """

    section: ClassVar[str] = "csc"
    definitions: tuple[str, ...] = ("calibrated", "phenotype", "quantile")
    phenotype: str = ""
    rule: str = ""
    alpha: float = 0.1
    n_random_sets: int = 1000
    quantile: float = 0.9

    def __post_init__(self):
        if self.rule not in ("", "fdr", "quantile"):
            raise ValueError(
                f"csc.rule must be 'fdr' or 'quantile' (or empty), not {self.rule!r}; "
                "the CSC call is now csc.definitions (calibrated | phenotype | quantile)"
            )

    def ordered_definitions(self) -> tuple[str, ...]:
        """``definitions`` with the one ``rule`` names (if any) first."""
        if not self.rule:
            return tuple(self.definitions)
        first = {"fdr": "calibrated", "quantile": "quantile"}[self.rule]
        return (first, *[d for d in self.definitions if d != first])


@dataclass(frozen=True)
class CnvParams(Params):
    """``cnv``: malignant cells confirmed by inferred copy number."""

    section: ClassVar[str] = "cnv"
    enabled: bool = True
    gene_positions: str = "cscniche:reference/gene_positions_hg38.tsv.gz"
    candidate_compartments: tuple[str, ...] = ("malignant", "candidate")
    candidate_policy: str = "malignant_first"
    reference_compartments: tuple[str, ...] = ("immune", "stromal")
    quantile: float = 0.99
    min_genes_with_position: int = 500
    min_genes_for_calls: int = 1000
    min_reference_cells: int = 20
    window_size: int = 100
    step: int = 10
    smooth: bool = True


@dataclass(frozen=True)
class NeighboursParams(Params):
    """``neighbours``: the CSC-label permutation null and the spatial graph."""

    section: ClassVar[str] = "neighbours"
    n_permutations: int = 10000
    spatial_k: int = 10
    spatial_radius: float | None = None
    spatial_null: str = "patch_regrowth"
    squidpy_enrichment: bool = False

    def __post_init__(self):
        if self.spatial_null not in ("patch_regrowth", "spatial_shift", "label_permutation"):
            raise ValueError(
                "neighbours.spatial_null must be patch_regrowth, spatial_shift or label_permutation, "
                f"not {self.spatial_null!r}"
            )


@dataclass(frozen=True)
class CheckpointsParams(Params):
    """``checkpoints``: the checkpoint gene table and the niche test's smallest group."""

    section: ClassVar[str] = "checkpoints"
    genes: str = "cscniche:checkpoints.tsv"
    niche_min_cells: int = 3
    min_expr_frac: float = 0.1
    min_expr_cells: int = 3


@dataclass(frozen=True)
class CrosstalkParams(Params):
    """``crosstalk``: LIANA filters, permutations and the labelled checkpoint axes."""

    section: ClassVar[str] = "crosstalk"
    n_permutations: int = 1000
    expr_prop: float = 0.1
    min_cells: int = 5
    max_p: float = 0.05
    axes: tuple[dict, ...] = field(default=DEFAULT_AXES)


@dataclass(frozen=True)
class DemoParams(Params):
    """``demo``: the embedded demo dataset."""

    section: ClassVar[str] = "demo"
    n_background_genes: int = 1500


@dataclass(frozen=True)
class FiguresParams(Params):
    """``figures``: which figures are also written as PDF (rule plot_sample; issue 18)."""

    section: ClassVar[str] = "figures"
    sample_pdf: bool = False


#: config section name -> its parameter class
SECTIONS: dict[str, type[Params]] = {
    cls.section: cls
    for cls in (
        DownloadParams,
        GenesParams,
        QcParams,
        ScaleParams,
        EmbeddingParams,
        AnnotationParams,
        ScoringParams,
        CscParams,
        CnvParams,
        NeighboursParams,
        CheckpointsParams,
        CrosstalkParams,
        DemoParams,
        FiguresParams,
    )
}


def section(name: str, mapping: Mapping[str, Any] | None = None, /, **overrides) -> Params:
    """The parameter object of config section ``name`` (see :meth:`Params.from_mapping`)."""
    return SECTIONS[name].from_mapping(mapping, **overrides)
