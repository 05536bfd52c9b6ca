"""Which cells the CNV step may call malignant: candidates from any lab's labels (issue 15 item 5).

Many curated tumour datasets label the cancer cells by their cell of origin ("Epithelial", "Hepatocytes",
"Cholangiocytes", "Ductal", "Luminal", "Basal"), not "cancer". The anchored compartment rules
(``cscniche/data/compartments_anchored.tsv``) put such labels in the compartment ``candidate``; this module turns
compartments (and, when the labels name no candidate, CNV scores) into the CNV candidate set:

1. **labels**: a cell is a candidate when its compartment is ``malignant`` or ``candidate``; the CNV step then
   keeps the CNV-high ones.
2. **CNV fallback**: when a sample's labels name no candidate at all, the cells that are neither ``immune`` nor
   ``stromal`` (the CNV reference compartments) *and* whose CNV score is above the reference-based threshold
   become the candidates, provided they form a population:

   - at least ``min_cells`` cells (default 20), and
   - at least ``min_fraction`` (default 0.05) of the sample's non-immune, non-stromal cells. The threshold is
     a high quantile of held-out reference cells (0.99 by default in ``cnv.call_malignant``), so about 1 % of
     normal cells pass it by construction; 5 % is five times that rate.

   The result then carries a warning string (for the sample summary), because the malignant set no longer rests
   on the authors' labels.
3. Otherwise the sample has no candidate, again with a warning.

Pure functions on arrays: no AnnData, no logging side effects, nothing imported from other cscniche modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: compartments whose cells are CNV candidates by their labels
CANDIDATE_COMPARTMENTS = ("malignant", "candidate")
#: compartments never taken as candidates (they are the CNV reference)
REFERENCE_COMPARTMENTS = ("immune", "stromal")
#: all compartments the anchored rules may name
COMPARTMENTS = ("malignant", "candidate", "immune", "stromal", "other")
#: the anchored rules shipped with the library
DEFAULT_RULES = Path(__file__).resolve().parents[1] / "data" / "compartments_anchored.tsv"


@dataclass(frozen=True)
class Candidates:
    """The CNV candidate set of one sample.

    ``candidate``: bool per cell. ``rule``: ``labels`` | ``cnv_fallback`` | ``none``. ``warning``: a one-line
    message for the summary, or ``None`` when the labels named candidates. ``counts``: the numbers behind the
    choice (cells, label candidates, eligible non-immune non-stromal cells, CNV-high eligible cells, thresholds).
    """

    candidate: np.ndarray
    rule: str
    warning: str | None
    counts: dict = field(default_factory=dict)

    @property
    def n_candidates(self) -> int:
        return int(self.candidate.sum())


def choose_candidates(
    compartment,
    cnv_score=None,
    *,
    threshold: float | None = None,
    min_cells: int = 20,
    min_fraction: float = 0.05,
    candidate_compartments=CANDIDATE_COMPARTMENTS,
    reference_compartments=REFERENCE_COMPARTMENTS,
    sample: str = "",
) -> Candidates:
    """CNV candidates of one sample from its compartments and, as a fallback, its CNV scores.

    ``compartment``: per-cell compartment strings (``malignant``, ``candidate``, ``immune``, ``stromal``,
    ``other``). ``cnv_score``: per-cell CNV score (``None`` or all-NaN when the CNV step could not run).
    ``threshold``: the sample's reference-based CNV threshold (e.g. the 0.99 quantile of held-out immune and
    stromal cells); a cell is CNV-high when its score is strictly above it. See the module docstring for the
    population rule (``min_cells``, ``min_fraction`` of the non-immune, non-stromal cells).
    """
    comp = np.asarray(pd.Series(compartment, dtype=object).astype(str))
    n = comp.size
    if min_cells < 1 or not 0 <= min_fraction <= 1:
        raise ValueError(f"min_cells must be >= 1 and min_fraction in [0, 1] (got {min_cells}, {min_fraction})")
    who = f"sample {sample}: " if sample else ""
    by_label = np.isin(comp, list(candidate_compartments))
    eligible = ~np.isin(comp, list(reference_compartments))
    counts = {
        "n_cells": int(n),
        "n_label_candidates": int(by_label.sum()),
        "n_eligible": int(eligible.sum()),
        "n_cnv_high_eligible": 0,
        "threshold": np.nan if threshold is None else float(threshold),
        "min_cells": int(min_cells),
        "min_fraction": float(min_fraction),
    }
    if by_label.any():
        return Candidates(by_label, "labels", None, counts)

    score = None if cnv_score is None else np.asarray(cnv_score, dtype=np.float64)
    if score is not None and score.shape != (n,):
        raise ValueError(f"cnv_score has {score.size} values for {n} cells")
    none = np.zeros(n, dtype=bool)
    if score is None or threshold is None or not np.isfinite(threshold) or not np.isfinite(score).any():
        return Candidates(
            none,
            "none",
            f"{who}no label names a malignant or candidate cell type and no calibrated CNV score is available; "
            "0 CNV candidates (check the cell-type labels or the compartment rules)",
            counts,
        )
    high = eligible & np.isfinite(score) & (score > threshold)
    n_high, n_elig = int(high.sum()), int(eligible.sum())
    share = n_high / n_elig if n_elig else 0.0
    counts["n_cnv_high_eligible"] = n_high
    counts["cnv_high_share"] = share
    if n_high >= min_cells and share >= min_fraction:
        return Candidates(
            high,
            "cnv_fallback",
            f"{who}no label names a malignant or candidate cell type; the {n_high} CNV-high cells of {n_elig} "
            f"non-immune, non-stromal cells ({share:.1%}, threshold {threshold:.4g}) are taken as CNV candidates",
            counts,
        )
    return Candidates(
        none,
        "none",
        f"{who}no label names a malignant or candidate cell type and the CNV-high non-immune, non-stromal cells "
        f"do not form a population ({n_high} of {n_elig}, {share:.1%}; need >= {min_cells} cells and "
        f">= {min_fraction:.0%}); 0 CNV candidates",
        counts,
    )


def read_rules(path: str | Path = DEFAULT_RULES) -> list[tuple[re.Pattern, str]]:
    """Ordered (regex, compartment) rules from a ``pattern``/``compartment`` TSV; ``candidate`` is allowed."""
    df = pd.read_csv(path, sep="\t", comment="#", dtype=str)
    missing = {"pattern", "compartment"} - set(df.columns)
    if missing:
        raise ValueError(f"compartment rules {path} lack columns {sorted(missing)}")
    bad = set(df["compartment"]) - set(COMPARTMENTS)
    if bad:
        raise ValueError(f"compartment rules {path}: unknown compartments {sorted(bad)}; use {COMPARTMENTS}")
    return [(re.compile(p, re.IGNORECASE), c) for p, c in zip(df["pattern"], df["compartment"], strict=True)]


def label_compartments(labels, rules: list[tuple[re.Pattern, str]] | None = None) -> np.ndarray:
    """Compartment of each label: lower-cased, ``_ - / .`` read as spaces, first matching rule, else ``other``."""
    rules = read_rules() if rules is None else rules
    labels = pd.Series(labels, dtype=object).astype(str)
    mapping = {}
    for lab in labels.unique():
        norm = re.sub(r"[_\-/.]+", " ", lab).strip().lower()
        mapping[lab] = next((comp for pat, comp in rules if pat.search(norm)), "other")
    return labels.map(mapping).to_numpy(dtype=object)
