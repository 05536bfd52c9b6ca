"""Parameters (cscniche._params): one frozen dataclass per config section, the one source of the defaults."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import ROOT

import cscniche as cn
from cscniche._params import SECTIONS, section

SCHEMA = yaml.safe_load((ROOT / "config/schemas/config.schema.yaml").read_text())["properties"]
CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_every_schema_default_equals_the_dataclass_default(name):
    props = SCHEMA[name]["properties"]
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[name])}
    assert set(props) == set(fields), f"section {name}: schema keys and dataclass fields differ"
    default = SECTIONS[name]()
    for key, spec in props.items():
        assert "default" in spec, f"{name}.{key} has no schema default"
        assert _plain(getattr(default, key)) == spec["default"], f"{name}.{key}"


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_the_shipped_config_is_the_defaults(name):
    """config/config.yaml writes every default out; the demo's tables depend on them."""
    assert SECTIONS[name].from_mapping(CONFIG[name]).to_dict() == SECTIONS[name]().to_dict()


def test_every_config_section_with_keys_has_a_class():
    sections = {k for k, v in SCHEMA.items() if v.get("type") == "object" and "properties" in v}
    assert sections == set(SECTIONS)


def test_unknown_key_is_named_with_the_closest_known_one():
    with pytest.raises(TypeError, match=r"config section 'scoring': 'method' \(did you mean 'methods'\?\)"):
        cn.ScoringParams.from_mapping({"method": ["mean"]})
    with pytest.raises(TypeError, match=r"'zzz'; known keys: n_permutations"):
        section("neighbours", {"zzz": 1})


def test_sections_are_frozen_and_lists_become_tuples():
    p = section("scoring", {"methods": ["mean", "pearson"]}, gene_sets=["a.gmt"])
    assert p.methods == ("mean", "pearson") and p.gene_sets == ("a.gmt",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.methods = ("mean",)


def test_steps_take_a_section_not_loose_keywords(demo_processed):
    with pytest.raises(TypeError, match="unexpected keyword"):
        cn.niche.neighbours(demo_processed, sample="demo", n_permutations=10)


def test_importing_the_package_does_not_import_scanpy():
    import subprocess
    import sys

    code = "import sys, cscniche as cn; cn.ScoringParams(); print('scanpy' in sys.modules, 'anndata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
