"""Cell typing: compartment rules on real author labels, marker-based annotation on the demo."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, shared_file

from cscniche.preprocess._annotate import compartment_of, read_compartment_rules, read_markers

RULES = read_compartment_rules(DATA / "compartments.tsv")


@pytest.mark.parametrize(
    ("label", "compartment"),
    [
        ("Cancer Epithelial", "malignant"),
        ("Cancer clone A", "malignant"),
        ("Cancer clone B", "malignant"),
        ("tumor 5", "malignant"),
        ("Malignant", "malignant"),
        ("T-cells", "immune"),
        ("T cells & NK cells", "immune"),
        ("T CD4 naive", "immune"),
        ("T_CD8", "immune"),
        ("Treg", "immune"),
        ("NK", "immune"),
        ("B-cells", "immune"),
        ("B-cell", "immune"),
        ("Plasmablasts", "immune"),
        ("Myeloid", "immune"),
        ("Macrophages B", "immune"),
        ("Tumor-associated macrophages", "immune"),
        ("mDCs A", "immune"),
        ("pDC", "immune"),
        ("neutrophil", "immune"),
        ("MDSC_like", "immune"),
        ("mast", "immune"),
        ("Lymphocyte", "immune"),
        ("CAFs", "stromal"),
        ("Malignant cell", "malignant"),
        ("TAM", "immune"),
        ("TEC", "stromal"),
        ("HPC-like", "other"),
        ("Cancer-associated fibroblasts", "stromal"),
        ("PVL", "stromal"),
        ("Endothelial", "stromal"),
        ("Vascular", "stromal"),
        ("fibroblast", "stromal"),
        ("Normal Epithelial", "other"),
        ("epithelial", "other"),
        ("Acinar cells", "other"),
        ("Ductal - MHC Class II", "other"),
    ],
)
def test_compartment_rules(label, compartment):
    assert compartment_of([label], RULES).iloc[0] == compartment


def test_every_marker_type_keeps_its_compartment_under_the_rules():
    markers = read_markers(DATA / "markers.tsv")
    got = compartment_of(markers["cell_type"], RULES).to_numpy()
    np.testing.assert_array_equal(got, markers["compartment"].to_numpy())


def test_real_author_labels_land_in_compartments():
    import anndata as ad

    a = ad.read_h5ad(shared_file("tumour/wu2021_tnbc_CID4465.h5ad"), backed="r")
    comp = compartment_of(a.obs["celltype_major"].astype(str), RULES)
    table = dict(zip(a.obs["celltype_major"].astype(str), comp, strict=True))
    assert table["Cancer Epithelial"] == "malignant"
    assert {table[k] for k in ("T-cells", "B-cells", "Myeloid", "Plasmablasts")} == {"immune"}
    assert {table[k] for k in ("CAFs", "PVL", "Endothelial")} == {"stromal"}


def test_marker_annotation_recovers_demo_types(demo_processed):
    obs = demo_processed.obs
    acc = (obs["cell_type"].astype(str) == obs["truth_cell_type"].astype(str)).mean()
    comp_acc = (obs["compartment"].astype(str) == obs["truth_compartment"].astype(str)).mean()
    assert comp_acc > 0.99, comp_acc
    assert acc > 0.95, acc
