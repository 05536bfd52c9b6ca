"""Gene identifiers: Ensembl IDs, version suffixes, old symbols and aliases, R- and spreadsheet-mangled names.

Supported: human data with HGNC symbols or human Ensembl gene IDs (``ENSG...``, with or without
version suffix). Ensembl IDs become symbols through a mapping table (``ensembl_id``, ``symbol``;
optional ``aliases``, comma-separated) given in the config, or through a symbol column of the
input file. Mouse data is not supported (no orthologue mapping is shipped).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*G\d{6,})\.\d+$")
#: spreadsheet programs turn some symbols into dates ("1-Mar"); these are the families concerned,
#: with their current HGNC symbol prefix (MARCH1 -> MARCHF1, SEPT1 -> SEPTIN1, DEC1 -> DELEC1)
_DATE_FAMILIES = {"mar": "MARCHF", "sep": "SEPTIN", "dec": "DELEC"}
_DATE = re.compile(r"^(\d{1,2})-(mar|sep|dec)$", re.IGNORECASE)

#: old symbols and common aliases of the genes this pipeline scores or reports, mapped to current
#: HGNC symbols (HGNC "previous symbols" and "alias symbols" fields). Only aliases that name one
#: gene are listed (e.g. not TCF1, which is an alias of both TCF7 and HNF1A).
ALIASES = {
    "PDL1": "CD274",
    "PD-L1": "CD274",
    "B7-H1": "CD274",
    "B7H1": "CD274",
    "PDL2": "PDCD1LG2",
    "PD-L2": "PDCD1LG2",
    "B7-DC": "PDCD1LG2",
    "PD1": "PDCD1",
    "PD-1": "PDCD1",
    "TIM3": "HAVCR2",
    "TIM-3": "HAVCR2",
    "CD133": "PROM1",
    "PROML1": "PROM1",
    "CD90": "THY1",
    "TACSTD1": "EPCAM",
    "SIRPALPHA": "SIRPA",
    "SHPS1": "SIRPA",
    "PTPNS1": "SIRPA",
    "NKG2A": "KLRC1",
    "OX-2": "CD200",
    "CD152": "CTLA4",
    "CD223": "LAG3",
    "VSIG9": "TIGIT",
    "VSTM3": "TIGIT",
    "B7-H3": "CD276",
    "B7H3": "CD276",
    "B7-H4": "VTCN1",
    "B7H4": "VTCN1",
    "PVRL2": "NECTIN2",
    "ABCB2": "TAP1",
    "APRF": "STAT3",
    "HRY": "HES1",
    "CTNNB": "CTNNB1",
    "GP130": "IL6ST",
    "AXIL": "AXIN2",
    "IPEX": "FOXP3",
}


@dataclass
class MappingReport:
    """What :func:`harmonise` did; ``as_dict()`` goes to ``uns``."""

    n_genes: int = 0
    n_version_stripped: int = 0
    n_ensembl_mapped: int = 0
    n_ensembl_unmapped: int = 0
    n_alias_renamed: int = 0
    n_dots_fixed: int = 0
    n_dates_fixed: int = 0
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: (v if not isinstance(v, list) else list(v)) for k, v in self.__dict__.items()}


def read_gene_map(path: str | Path) -> pd.DataFrame:
    """Read a mapping table with columns ``ensembl_id`` and ``symbol`` (optional ``aliases``).

    Several IDs in one cell (``ENSG...;ENSG...``, as in Bioconductor org.Hs.eg.db exports) give one row each.
    """
    df = pd.read_csv(path, sep="\t", dtype=str, comment="#")
    missing = {"ensembl_id", "symbol"} - set(df.columns)
    if missing:
        raise ValueError(f"gene map {path} lacks columns {sorted(missing)}")
    # one gene may carry several Ensembl IDs ("ENSG...;ENSG..."): one row per ID
    df = df.dropna(subset=["ensembl_id", "symbol"]).assign(ensembl_id=lambda d: d["ensembl_id"].str.split(r"[;,|]"))
    return df.explode("ensembl_id").assign(ensembl_id=lambda d: d["ensembl_id"].str.strip()).reset_index(drop=True)


def is_mouse(names) -> bool:
    """True when most names look like mouse genes: ENSMUSG IDs, or symbols in mouse case (``Actb``)."""
    names = [str(n) for n in list(names)[:3000]]
    if not names:
        return False
    ensmus = np.mean([n.startswith("ENSMUSG") for n in names])
    cased = np.mean([bool(re.match(r"^[A-Z][a-z0-9]+[a-z0-9-]*$", n)) and any(c.islower() for c in n) for n in names])
    upper = np.mean([n.upper() == n for n in names])
    return bool(ensmus > 0.5 or (cased > 0.5 and upper < 0.2))


def harmonise(
    names,
    *,
    known: set[str] | None = None,
    gene_map: pd.DataFrame | None = None,
    aliases: dict[str, str] | None = None,
) -> tuple[list[str], MappingReport]:
    """Harmonise gene identifiers to current human symbols.

    Steps, in order: strip Ensembl version suffixes (``ENSG...\\.12``); map Ensembl IDs to symbols
    with ``gene_map``; undo spreadsheet dates (``1-Mar`` -> ``MARCHF1``); undo R's ``make.names``
    dots (``HLA.A`` -> ``HLA-A``) when the dashed name is a ``known`` symbol; rename aliases and
    old symbols (``aliases``, default :data:`ALIASES`, plus ``gene_map``'s ``aliases`` column) to
    their current symbol when that symbol is not already present. Unmapped Ensembl IDs are kept.
    """
    names = [str(n) for n in names]
    rep = MappingReport(n_genes=len(names))
    known = set(known or ())
    alias_map = dict(ALIASES if aliases is None else aliases)
    ens_map: dict[str, str] = {}
    if gene_map is not None:
        gm = gene_map.dropna(subset=["ensembl_id", "symbol"])
        ens_map = dict(zip(gm["ensembl_id"].str.replace(r"\.\d+$", "", regex=True), gm["symbol"], strict=True))
        known |= set(gm["symbol"])
        if "aliases" in gm.columns:
            for sym, al in zip(gm["symbol"], gm["aliases"].fillna(""), strict=True):
                for a in filter(None, (x.strip() for x in al.split(","))):
                    alias_map.setdefault(a, sym)
    known |= set(alias_map.values())
    out = []
    for n in names:
        new = n
        m = _ENSEMBL_VERSION.match(new)
        if m:
            new = m.group(1)
            rep.n_version_stripped += 1
        if new.startswith("ENS") and re.match(r"^ENS[A-Z]*G\d{6,}$", new):
            if new in ens_map:
                new = ens_map[new]
                rep.n_ensembl_mapped += 1
            else:
                rep.n_ensembl_unmapped += 1
        d = _DATE.match(new)
        if d:
            new = f"{_DATE_FAMILIES[d.group(2).lower()]}{int(d.group(1))}"
            rep.n_dates_fixed += 1
        if "." in new and new.replace(".", "-") in known:
            new = new.replace(".", "-")
            rep.n_dots_fixed += 1
        if new != n and len(rep.examples) < 10:
            rep.examples.append(f"{n}->{new}")
        out.append(new)
    present = set(out)
    for i, n in enumerate(out):
        target = alias_map.get(n) or alias_map.get(n.upper())
        if target and target != n and target not in present:
            out[i] = target
            present.add(target)
            rep.n_alias_renamed += 1
            if len(rep.examples) < 10:
                rep.examples.append(f"{names[i]}->{target}")
    return out, rep
