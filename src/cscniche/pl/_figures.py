"""Figures for the report: pure functions, data in (AnnData or a results table), matplotlib Figure out.

Every function reads its inputs by column name (extra columns are ignored), draws nothing
interactive and returns a :class:`matplotlib.figure.Figure`; :func:`save` writes it as PNG and PDF
with fixed metadata, so the same data give the same files. When there is nothing to draw (no
spatial coordinates, no CSC, an empty table) the figure is a placeholder panel that says why,
so the report always has the item.

The workflow scripts select the non-interactive Agg backend before importing this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from .._smk import SAMPLE_FIGURES  # noqa: F401  (re-exported: cscniche.pl.SAMPLE_FIGURES)

#: figure names written per sample, for the cohort and for QC (the workflow's outputs follow these)
COHORT_FIGURES = (
    "composition",
    "neighbours",
    "checkpoints",
    "forest_neighbours",
    "forest_checkpoints",
    "forest_crosstalk",
    "burden",
)
QC_FIGURES = ("qc_cells", "qc_metrics", "signature_coverage")

COMPARTMENT_COLOURS = {"malignant": "#c44e52", "immune": "#4c72b0", "stromal": "#55a868", "other": "#8c8c8c"}
CSC_COLOUR = "#d62728"
NONCSC_COLOUR = "#e8c9a0"
#: qualitative palette for cell types (tab20 without its greys and reds, which mark other things)
_TYPE_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
]
_DPI = 150

log = logging.getLogger(__name__)


def stars(fdr) -> str:
    """Significance mark of an FDR (or p): ``***`` < 0.001, ``**`` < 0.01, ``*`` < 0.05, else empty."""
    if fdr is None or not np.isfinite(fdr):
        return ""
    return "***" if fdr < 0.001 else "**" if fdr < 0.01 else "*" if fdr < 0.05 else ""


def save(fig: Figure, stem: str | Path, *, formats: Iterable[str] = ("png", "pdf"), close: bool = True) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (parents created) and close it; returns the paths.

    Metadata that would change from run to run (creation date, software string) are left out, so
    equal figures give byte-identical PNGs.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        meta = {"Software": None} if fmt == "png" else {"CreationDate": None, "Creator": None, "Producer": None}
        if fmt == "svg":
            meta = {"Date": None, "Creator": None}
        fig.savefig(path, format=fmt, dpi=_DPI, metadata=meta, bbox_inches="tight")
        out.append(path)
    if close:
        plt.close(fig)
    return out


def placeholder(message: str, *, title: str = "", figsize=(6, 2.5)) -> Figure:
    """A figure with one empty panel saying ``message`` (used when there is nothing to plot)."""
    fig = plt.figure(figsize=figsize)
    ax = fig.add_subplot(1, 1, 1)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title)
    return fig


def _palette(labels: Iterable[str]) -> dict[str, str]:
    """Distinct colours per label (sorted): our 16 colours, else scanpy's 28- or 102-colour palettes."""
    from scanpy.plotting import palettes

    labels = sorted(dict.fromkeys(str(x) for x in labels))
    n = len(labels)
    colours = _TYPE_PALETTE if n <= 16 else palettes.default_28 if n <= 28 else palettes.default_102
    return {lab: colours[i % len(colours)] for i, lab in enumerate(labels)}


def _groups(obs: pd.DataFrame) -> pd.Series:
    """Per-cell plotting group: CSC, non-CSC malignant, or the compartment of the cell.

    Cells of the malignant compartment left out of ``obs['malignant']`` (not confirmed, e.g. by CNV) are
    ``unconfirmed malignant``.
    """
    comp = obs["compartment"].astype(str) if "compartment" in obs else pd.Series("other", index=obs.index)
    if "malignant" in obs:
        mal = obs["malignant"].astype(bool)
    else:
        mal = comp == "malignant"
    csc = obs["csc"].astype(bool) if "csc" in obs else pd.Series(False, index=obs.index)
    g = comp.where(~mal, "non-CSC malignant")
    g = g.where(~(mal & csc), "CSC")
    g = g.where(~((comp == "malignant") & ~mal), UNCONFIRMED)
    return g


UNCONFIRMED = "unconfirmed malignant"
GROUP_ORDER = ["CSC", "non-CSC malignant", UNCONFIRMED, "malignant", "immune", "stromal", "other"]
GROUP_COLOURS = {
    "CSC": CSC_COLOUR,
    "non-CSC malignant": NONCSC_COLOUR,
    UNCONFIRMED: "#f2b8c6",
    **COMPARTMENT_COLOURS,
}


def _ordered(values: Iterable[str], order: list[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [g for g in order if g in present] + sorted(g for g in present if g not in order)


# ----------------------------------------------------------------------------------------------- per sample
def umap(adata: ad.AnnData, *, sample: str = "") -> Figure:
    """UMAP coloured by cell type, compartment, stemness index and CSC call (scanpy ``pl.umap``)."""
    import scanpy as sc

    if "X_umap" not in adata.obsm:
        return placeholder("no UMAP in this run (config embedding.umap: false)", title=f"{sample} UMAP")
    obs = adata.obs
    view = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names), obsm={"X_umap": np.asarray(adata.obsm["X_umap"])})
    colors = []
    palettes = {}
    if "cell_type" in obs:
        view.obs["cell type"] = pd.Categorical(obs["cell_type"].astype(str))
        palettes["cell type"] = _palette(view.obs["cell type"].cat.categories)
        colors.append("cell type")
    if "compartment" in obs:
        cats = _ordered(obs["compartment"].astype(str), list(COMPARTMENT_COLOURS))
        view.obs["compartment"] = pd.Categorical(obs["compartment"].astype(str), categories=cats)
        palettes["compartment"] = {c: COMPARTMENT_COLOURS.get(c, "#8c8c8c") for c in cats}
        colors.append("compartment")
    if "stemness" in obs:
        view.obs["stemness index"] = obs["stemness"].to_numpy(dtype=float)
        colors.append("stemness index")
    if "csc" in obs:
        g = _groups(obs).to_numpy()
        shown = ("not malignant", UNCONFIRMED, "non-CSC malignant", "CSC")
        label = np.where(np.isin(g, shown), g, "not malignant")
        cats = [c for c in shown if c in set(label)]
        view.obs["CSC call"] = pd.Categorical(label, categories=cats)
        palettes["CSC call"] = {**GROUP_COLOURS, "not malignant": "#d9d9d9"}
        colors.append("CSC call")
    if not colors:
        return placeholder("no cell labels or scores to colour the UMAP by", title=f"{sample} UMAP")
    fig, axes = plt.subplots(2, 2, figsize=(13, 10.5))
    axes = axes.ravel()
    size = float(np.clip(120000 / max(adata.n_obs, 1), 2, 40))
    for ax, key in zip(axes, colors, strict=False):
        kw = {"palette": palettes[key]} if key in palettes else {"color_map": "viridis"}
        if key == "stemness index":
            v = view.obs[key].to_numpy()
            kw.update(vmin=float(np.nanpercentile(v, 1)), vmax=float(np.nanpercentile(v, 99)))
        sc.pl.umap(view, color=key, ax=ax, show=False, frameon=False, size=size, title=key, sort_order=True, **kw)
    for ax in axes[len(colors) :]:
        ax.set_visible(False)
    fig.suptitle(f"{sample}: UMAP ({adata.n_obs:,} cells)", fontsize=14)
    fig.tight_layout()
    return fig


def _stemness_method(obs: pd.DataFrame) -> str:
    """The scoring method whose index ``stemness_<method>`` is the ``stemness`` column ('' when none is)."""
    s = obs["stemness"].to_numpy(dtype=float)
    for c in obs.columns:
        m = str(c).removeprefix("stemness_")
        if str(c).startswith("stemness_") and m not in ("pvalue", "resid") and not m.endswith("_resid"):
            v = pd.to_numeric(obs[c], errors="coerce").to_numpy(dtype=float)
            if v.shape == s.shape and np.allclose(v, s, equal_nan=True):
                return m
    return ""


def score_distributions(adata: ad.AnnData, *, sample: str = "") -> Figure:
    """Violin plots of every ``score_<set>`` and the stemness index per group (CSC, non-CSC, compartments)."""
    obs = adata.obs
    keys = [c for c in obs.columns if c.startswith("score_")] + (["stemness"] if "stemness" in obs else [])
    if not keys:
        return placeholder("no signature scores in this sample", title=f"{sample} scores")
    groups = _groups(obs)
    order = _ordered(groups, GROUP_ORDER)
    ncol = min(3, len(keys))
    nrow = int(np.ceil(len(keys) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.8 * nrow), squeeze=False)
    for ax, key in zip(axes.ravel(), keys, strict=False):
        data = [obs.loc[(groups == g).to_numpy(), key].to_numpy(dtype=float) for g in order]
        data = [d[np.isfinite(d)] for d in data]
        pos = [i for i, d in enumerate(data) if d.size > 1]
        if pos:
            parts = ax.violinplot([data[i] for i in pos], positions=pos, showextrema=False, widths=0.8)
            for body, i in zip(parts["bodies"], pos, strict=True):
                body.set_facecolor(GROUP_COLOURS.get(order[i], "#8c8c8c"))
                body.set_edgecolor("black")
                body.set_linewidth(0.5)
                body.set_alpha(0.85)
        med = [np.median(d) if d.size else np.nan for d in data]
        ax.scatter(range(len(order)), med, color="black", s=14, zorder=3, label="median")
        ax.set_xticks(range(len(order)))
        tilt = {"rotation": 30, "ha": "right"} if len(order) > 3 else {}
        ax.set_xticklabels([f"{g}\n(n={d.size:,})" for g, d in zip(order, data, strict=True)], fontsize=8, **tilt)
        if key == "stemness":
            method = _stemness_method(obs)
            ax.set_title(f"stemness index ({method} scores)" if method else "stemness index", fontsize=10)
        else:
            ax.set_title(f"{key.removeprefix('score_')} (mean: score_genes)", fontsize=10)
        ax.axhline(0, color="grey", lw=0.5, ls=":")
        ax.set_ylabel("score")
    for ax in axes.ravel()[len(keys) :]:
        ax.set_visible(False)
    if "csc_threshold" in adata.uns.get("cscniche", {}) and "stemness" in keys:
        ax = axes.ravel()[keys.index("stemness")]
        thr = float(adata.uns["cscniche"]["csc_threshold"])
        ax.axhline(thr, color=CSC_COLOUR, lw=1, ls="--", label=f"CSC threshold {thr:.2f}")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{sample}: signature scores by group", fontsize=13)
    fig.tight_layout()
    return fig


def csc_marker_detection(adata: ad.AnnData, *, sample: str = "") -> Figure:
    """Fraction of cells detecting (count > 0) each CSC marker and its mean expression, per group."""
    obs = adata.obs
    genes = [c.removeprefix("detected_") for c in obs.columns if c.startswith("detected_")]
    if not genes:
        return placeholder("none of the CSC marker genes is in the data", title=f"{sample} CSC markers")
    groups = _groups(obs)
    order = _ordered(groups, GROUP_ORDER)
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.4 * len(genes) + 3), 4.2))
    width = 0.8 / len(order)
    x = np.arange(len(genes))
    for j, g in enumerate(order):
        sel = (groups == g).to_numpy()
        frac = [obs.loc[sel, f"detected_{gene}"].astype(bool).mean() if sel.any() else np.nan for gene in genes]
        mean = [
            obs.loc[sel, f"expr_{gene}"].astype(float).mean() if sel.any() and f"expr_{gene}" in obs else np.nan
            for gene in genes
        ]
        kw = dict(width=width, color=GROUP_COLOURS.get(g, "#8c8c8c"), edgecolor="black", linewidth=0.4)
        axes[0].bar(
            x + (j - (len(order) - 1) / 2) * width, np.asarray(frac) * 100, label=f"{g} (n={sel.sum():,})", **kw
        )
        axes[1].bar(x + (j - (len(order) - 1) / 2) * width, mean, **kw)
    for ax, ylab in zip(axes, ("% of cells detecting (count > 0)", "mean log-normalised expression"), strict=True):
        ax.set_xticks(x)
        ax.set_xticklabels(genes, fontsize=10)
        ax.set_ylabel(ylab)
    axes[0].set_ylim(0, 100)
    axes[0].legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.12), ncol=3)
    fig.suptitle(f"{sample}: CSC marker detection", fontsize=13)
    fig.tight_layout()
    return fig


def neighbour_heatmap(table: pd.DataFrame, *, sample: str = "") -> Figure:
    """Heatmap of immune-neighbour log2 enrichment (rows immune types; columns neighbourhood x group).

    Cells show the log2 enrichment with ``*``/``**``/``***`` for FDR < 0.05/0.01/0.001; the
    colour scale is centred on 0 (red: more neighbours of that type than expected).
    """
    need = {"neighbourhood", "group", "immune_type", "log2_enrichment"}
    t = table.copy() if need <= set(table.columns) else pd.DataFrame(columns=sorted(need))
    t = t[t["immune_type"].fillna("").astype(str) != ""]
    if t.empty:
        notes = sorted(set(table.get("note", pd.Series(dtype=str)).dropna().astype(str)) - {""})
        msg = "no neighbour enrichment: " + "; ".join(notes) if notes else "no neighbour enrichment rows"
        return placeholder(msg, title=f"{sample} immune neighbours")
    t["column"] = t["neighbourhood"].astype(str) + "\n" + t["group"].astype(str)
    cols = sorted(t["column"].unique(), key=lambda c: (c.split("\n")[0], c.split("\n")[1] != "CSC"))
    rows = sorted(t["immune_type"].astype(str).unique())
    val = t.pivot_table(index="immune_type", columns="column", values="log2_enrichment", aggfunc="first")
    val = val.reindex(index=rows, columns=cols)
    fdr_col = "fdr" if "fdr" in t else "p" if "p" in t else None
    sig = (
        t.pivot_table(index="immune_type", columns="column", values=fdr_col, aggfunc="first").reindex(
            index=rows, columns=cols
        )
        if fdr_col
        else None
    )
    none = _none_mask(t, "immune_type", "column", rows, cols)
    return _heatmap(
        val,
        sig,
        none=none,
        title=f"{sample}: immune neighbours of CSC vs non-CSC malignant cells",
        cbar_label="log2 enrichment (observed / expected)",
        xlabel="neighbourhood / malignant group",
        ylabel="immune cell type",
    )


#: colour scales of log2 ratios end here (values beyond are drawn at the end colour, and printed)
LOG2_CAP = 3.0


def _heatmap(
    val: pd.DataFrame,
    sig: pd.DataFrame | None,
    *,
    title,
    cbar_label,
    xlabel="",
    ylabel="",
    none: np.ndarray | None = None,
    cap: float = LOG2_CAP,
) -> Figure:
    """Annotated diverging heatmap; ``none`` marks cells with nothing observed nor expected (drawn grey)."""
    m = val.to_numpy(dtype=float)
    if none is not None:
        m = np.where(none, np.nan, m)
    top = float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 1.0
    lim = min(max(top, 0.5), cap)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * m.shape[1] + 3.5), max(3, 0.45 * m.shape[0] + 1.8)))
    im = _draw_cells(ax, m, sig.to_numpy(dtype=float) if sig is not None else None, none, lim)
    ax.set_xticks(range(m.shape[1]))
    ax.set_xticklabels(val.columns, fontsize=8, rotation=0 if m.shape[1] <= 6 else 60, ha="center")
    ax.set_yticks(range(m.shape[0]))
    ax.set_yticklabels(val.index, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    cb = fig.colorbar(im, ax=ax, shrink=0.8, extend="both" if top > lim else "neither")
    cb.set_label(cbar_label + (f"\n(colour capped at ±{lim:g})" if top > lim else ""), fontsize=8)
    note = "\nnone: no such neighbour observed or expected" if none is not None and none.any() else ""
    ax.set_title(title + "\n* FDR < 0.05, ** < 0.01, *** < 0.001" + note, fontsize=10)
    fig.tight_layout()
    return fig


def _draw_cells(ax, m, sig, none, lim, *, digits: int = 2, fontsize: float = 8):
    """Diverging colour cells with the value and FDR stars written in; NaN cells grey with n/a or none."""
    im = ax.imshow(
        np.ma.masked_invalid(m), cmap="RdBu_r", norm=TwoSlopeNorm(0, -lim, lim), aspect="auto", interpolation="none"
    )
    ax.set_facecolor("#eeeeee")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if not np.isfinite(m[i, j]):
                label = "none" if none is not None and none[i, j] else "n/a"
                ax.text(j, i, label, ha="center", va="center", fontsize=fontsize - 1, color="grey")
                continue
            mark = stars(sig[i, j]) if sig is not None else ""
            colour = "white" if abs(m[i, j]) > 0.6 * lim else "black"
            ax.text(j, i, f"{m[i, j]:.{digits}f}{mark}", ha="center", va="center", fontsize=fontsize, color=colour)
    return im


def _none_mask(t: pd.DataFrame, index: str, columns: str, rows, cols) -> np.ndarray | None:
    """True where neither an observed nor an expected neighbour exists (``observed == expected == 0``)."""
    if not {"observed", "expected"} <= set(t.columns):
        return None
    flag = (t["observed"].astype(float) == 0) & (t["expected"].astype(float) == 0)
    tab = t.assign(_none=flag).pivot_table(index=index, columns=columns, values="_none", aggfunc="first")
    return tab.reindex(index=rows, columns=cols).fillna(False).astype(bool).to_numpy()


def checkpoint_dotplot(table: pd.DataFrame, *, sample: str = "") -> Figure:
    """Dotplot of checkpoint genes by group (size: % expressing, colour: mean expression) and CSC vs non-CSC
    log2 fold change with FDR marks."""
    need = {"gene", "group", "mean_expr", "frac_expr"}
    if not need <= set(table.columns) or table.empty:
        return placeholder("no checkpoint gene is in the data", title=f"{sample} checkpoints")
    t = table.copy()
    role_order = ["tumour_ligand", "antigen_presentation", "immune_receptor"]
    roles = t.drop_duplicates("gene").set_index("gene")["role"].astype(str) if "role" in t else None
    genes = list(dict.fromkeys(t["gene"].astype(str)))
    if roles is not None:
        genes = sorted(genes, key=lambda g: (_rank(roles.get(g, ""), role_order), genes.index(g)))
    groups = _ordered(t["group"].astype(str), ["CSC", "nonCSC"])
    ny, nx = len(genes), len(groups)
    fig = plt.figure(figsize=(0.55 * nx + 7.0, 0.3 * ny + 2.4))
    gs = fig.add_gridspec(1, 3, width_ratios=[max(nx, 2) * 0.55, 2.4, 1.6], wspace=0.08)
    ax = fig.add_subplot(gs[0])
    ax2 = fig.add_subplot(gs[1], sharey=ax)
    side = fig.add_subplot(gs[2])
    side.axis("off")
    gi = {g: i for i, g in enumerate(genes)}
    xi = {g: i for i, g in enumerate(groups)}
    y = t["gene"].astype(str).map(gi).to_numpy()
    x = t["group"].astype(str).map(xi).to_numpy()
    frac = np.nan_to_num(t["frac_expr"].to_numpy(dtype=float))
    dots = ax.scatter(
        x,
        y,
        s=8 + 160 * frac,
        c=t["mean_expr"].to_numpy(dtype=float),
        cmap="Reds",
        edgecolors="grey",
        linewidths=0.3,
        vmin=0,
    )
    ax.set_xticks(range(nx))
    if "n_cells" in t:
        n = t.drop_duplicates("group").set_index(t.drop_duplicates("group")["group"].astype(str))["n_cells"]
        ax.set_xticklabels([f"{g} (n={int(n[g]):,})" if np.isfinite(n[g]) else g for g in groups], rotation=60,
                           ha="right", fontsize=8)  # fmt: skip
    else:
        ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(ny))
    ax.set_yticklabels(genes, fontsize=8)
    ax.set_xlim(-0.6, nx - 0.4)
    ax.set_ylim(ny - 0.5, -0.5)
    ax.set_title("by group", fontsize=9)
    if nx > 2 and groups[:2] == ["CSC", "nonCSC"]:
        ax.axvline(1.5, color="grey", lw=0.6, ls=":")
    if roles is not None:
        for i in range(1, ny):
            if roles.get(genes[i]) != roles.get(genes[i - 1]):
                ax.axhline(i - 0.5, color="grey", lw=0.6)
                ax2.axhline(i - 0.5, color="grey", lw=0.6)
        trans = blended_transform_factory(ax2.transAxes, ax2.transData)
        for r in dict.fromkeys(roles.get(g, "") for g in genes):
            idx = [i for i, g in enumerate(genes) if roles.get(g) == r]
            ax2.text(1.03, np.mean(idx), r.replace("_", " "), rotation=270, ha="left", va="center", fontsize=7,
                     transform=trans)  # fmt: skip
    cax = side.inset_axes([0.35, 0.62, 0.12, 0.36])
    cb = fig.colorbar(dots, cax=cax)
    cb.set_label("mean log-norm.\nexpression", fontsize=7)
    cb.ax.tick_params(labelsize=7)
    handles = [
        Line2D([], [], ls="", marker="o", color="grey", markersize=np.sqrt(8 + 160 * f), label=f"{int(f * 100)}%")
        for f in (0.1, 0.5, 1.0)
    ]
    side.legend(handles=handles, title="% expressing", fontsize=7, title_fontsize=7, loc="upper left",
                bbox_to_anchor=(0.25, 0.5), frameon=False, labelspacing=1.2)  # fmt: skip
    plt.setp(ax2.get_yticklabels(), visible=False)
    if "log2fc_csc_vs_noncsc" in t:
        per = t.drop_duplicates("gene").set_index("gene").reindex(genes)
        fc = per["log2fc_csc_vs_noncsc"].to_numpy(dtype=float)
        fdr = per["fdr"].to_numpy(dtype=float) if "fdr" in per else np.full(ny, np.nan)
        colours = [CSC_COLOUR if v > 0 else "#4c72b0" for v in np.nan_to_num(fc)]
        ax2.barh(range(ny), np.nan_to_num(fc), color=colours, height=0.7)
        lim = max(1.0, float(np.nanmax(np.abs(fc))) if np.isfinite(fc).any() else 1.0)
        for i, (v, q) in enumerate(zip(fc, fdr, strict=True)):
            if not np.isfinite(fc).any():
                break
            mark = stars(q) if np.isfinite(v) else "n/a"
            if mark:
                ax2.text(v + (0.03 * lim if v >= 0 else -0.03 * lim) if np.isfinite(v) else 0, i, mark,
                         va="center", ha="center" if not np.isfinite(v) else "right" if v < 0 else "left",
                         fontsize=8)  # fmt: skip
        if not np.isfinite(fc).any():
            ax2.text(0.5, 0.5, "no CSC vs non-CSC\ncomparison\n(no CSC or no\nnon-CSC cells)", ha="center",
                     va="center", fontsize=8, transform=ax2.transAxes, backgroundcolor="white")  # fmt: skip
        ax2.set_xlim(-1.35 * lim, 1.35 * lim)
        ax2.axvline(0, color="black", lw=0.6)
        ax2.set_xlabel("log2 FC, CSC vs non-CSC\n* FDR<0.05, ** <0.01, *** <0.001", fontsize=8)
        ax2.tick_params(axis="x", labelsize=8)
        ax2.set_title("CSC vs non-CSC", fontsize=9)
    else:
        ax2.set_xticks([])
        ax2.text(0.5, 0.5, "no CSC vs non-CSC\ncomparison", ha="center", va="center", transform=ax2.transAxes)
    fig.suptitle(f"{sample}: immune-checkpoint and antigen-presentation genes", fontsize=12)
    fig.subplots_adjust(left=0.12, right=0.98, top=1 - 1.0 / (0.3 * ny + 2.4), bottom=1.3 / (0.3 * ny + 2.4))
    return fig


def _rank(value, order) -> int:
    return order.index(value) if value in order else len(order)


def tissue_map(adata: ad.AnnData, *, sample: str = "", max_types: int = 12) -> Figure:
    """Cells at their ``obsm['spatial']`` coordinates: CSC, non-CSC malignant, immune types, other cells.

    Without spatial coordinates the figure is a placeholder panel saying so.
    """
    if "spatial" not in adata.obsm:
        log.info("sample '%s': no spatial coordinates (obsm['spatial']); the tissue map is a placeholder", sample)
        return placeholder(
            "no spatial coordinates in this sample (obsm['spatial'] absent)",
            title=f"{sample}: tissue map",
        )
    xy = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
    obs = adata.obs
    groups = _groups(obs).to_numpy()
    ctype = obs["cell_type"].astype(str).to_numpy() if "cell_type" in obs else np.full(adata.n_obs, "")
    imm = groups == "immune"
    types = pd.Series(ctype[imm]).value_counts()
    shown = sorted(types.index[:max_types])
    pal = _palette(shown)
    size = float(np.clip(30000 / max(adata.n_obs, 1), 0.5, 25))
    fig, ax = plt.subplots(figsize=(9.5, 8))
    handles = []
    other = ~np.isin(groups, ["CSC", "non-CSC malignant", UNCONFIRMED, "immune"]) | (imm & ~np.isin(ctype, shown))
    ax.scatter(*xy[other].T, s=size * 0.6, c="#dddddd", linewidths=0, rasterized=True)
    handles.append(Patch(color="#dddddd", label=f"other cells (n={other.sum():,})"))
    sel = groups == UNCONFIRMED
    if sel.any():
        ax.scatter(*xy[sel].T, s=size, c=GROUP_COLOURS[UNCONFIRMED], linewidths=0, rasterized=True)
        handles.append(Patch(color=GROUP_COLOURS[UNCONFIRMED], label=f"{UNCONFIRMED} (n={sel.sum():,})"))
    sel = groups == "non-CSC malignant"
    ax.scatter(*xy[sel].T, s=size, c=NONCSC_COLOUR, linewidths=0, rasterized=True)
    handles.append(Patch(color=NONCSC_COLOUR, label=f"non-CSC malignant (n={sel.sum():,})"))
    for t in shown:
        sel = imm & (ctype == t)
        ax.scatter(*xy[sel].T, s=size * 1.2, c=pal[t], linewidths=0, rasterized=True)
        handles.append(Patch(color=pal[t], label=f"{t} (n={sel.sum():,})"))
    sel = groups == "CSC"
    ax.scatter(*xy[sel].T, s=size * 1.8, c=CSC_COLOUR, marker="D", edgecolors="black", linewidths=0.2, rasterized=True)
    handles.append(
        Line2D([], [], ls="", marker="D", color=CSC_COLOUR, markeredgecolor="black", label=f"CSC (n={sel.sum():,})")
    )
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{sample}: tissue map, CSC and immune cell types")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def sample_figures(
    adata: ad.AnnData,
    *,
    neighbours: pd.DataFrame,
    checkpoints: pd.DataFrame,
    crosstalk_table: pd.DataFrame | None = None,
    sample: str = "",
) -> dict[str, Figure]:
    """Every per-sample figure of the report, keyed by the names in :data:`SAMPLE_FIGURES`
    (``crosstalk_table``: the sample's ``crosstalk.tsv``; ``None`` draws a placeholder saying it is absent)."""
    return {
        "umap": umap(adata, sample=sample),
        "scores": score_distributions(adata, sample=sample),
        "csc_markers": csc_marker_detection(adata, sample=sample),
        "immune_neighbours": neighbour_heatmap(neighbours, sample=sample),
        "checkpoints": checkpoint_dotplot(checkpoints, sample=sample),
        "tissue_map": tissue_map(adata, sample=sample),
        "crosstalk": (
            crosstalk(crosstalk_table, sample=sample)
            if crosstalk_table is not None
            else placeholder("no crosstalk table given", title=f"{sample} crosstalk")
        ),
    }


# ------------------------------------------------------------------------------------------------ crosstalk
_LOG10P_CAP = 4.0


def _area(log10p, cap):
    return 15 + 185 * np.asarray(log10p, dtype=float) / cap


def crosstalk(table: pd.DataFrame, *, sample: str = "", top: int = 40) -> Figure:
    """Dotplot of checkpoint-axis crosstalk: ligand -> receptor (rows, grouped by axis) by source -> target.

    ``table`` needs ``ligand, receptor, source, target, score`` and ``p`` or ``rank`` (smaller is
    stronger, e.g. a liana aggregate rank); ``axis`` groups the rows (rows with an empty axis are
    left out when any row has one). Colour: score; size: -log10 p (or rank); a black ring marks
    p < 0.05. At most ``top`` interactions (by p, then score) are shown.
    """
    need = {"ligand", "receptor", "source", "target", "score"}
    if not need <= set(table.columns) or table.empty:
        return placeholder("no checkpoint-axis crosstalk to show", title=f"{sample} crosstalk")
    named = table[["ligand", "receptor"]].fillna("").astype(str).ne("").all(axis=1)
    t = table[named & table["score"].notna()].copy()
    if t.empty:
        notes = sorted(set(table.get("note", pd.Series(dtype=str)).dropna().astype(str)) - {""})
        msg = "no crosstalk: " + "; ".join(notes) if notes else "no checkpoint-axis crosstalk to show"
        return placeholder(msg, title=f"{sample} crosstalk")
    pcol = "p" if "p" in t else "rank" if "rank" in t else None
    t["_p"] = t[pcol].astype(float).clip(lower=1e-300) if pcol else np.nan
    if "axis" in t:
        t["axis"] = t["axis"].fillna("").astype(str)
        if (t["axis"] != "").any():
            t = t[t["axis"] != ""]
    else:
        t["axis"] = ""
    t["pair"] = t["ligand"].astype(str) + " → " + t["receptor"].astype(str)
    t["cells"] = t["source"].astype(str) + " → " + t["target"].astype(str)
    t = t.sort_values(["_p", "score", "axis", "pair", "cells"], ascending=[True, False, True, True, True])
    keep = list(dict.fromkeys(t["pair"] + "|" + t["cells"]))[:top]
    t = t[(t["pair"] + "|" + t["cells"]).isin(keep)].drop_duplicates(["pair", "cells"])
    pairs = t.sort_values(["axis", "pair"]).drop_duplicates("pair")[["axis", "pair"]]
    rows = list(pairs["pair"])
    cols = sorted(t["cells"].unique())
    ri = {p: i for i, p in enumerate(rows)}
    ci = {c: i for i, c in enumerate(cols)}
    fig, ax = plt.subplots(figsize=(0.55 * len(cols) + 5.5, 0.38 * len(rows) + 2.6))
    # dot area grows with -log10 p up to p = 1e-4 (permutation p-values of 0 would otherwise dwarf the rest)
    size = np.clip(-np.log10(t["_p"].to_numpy(dtype=float)), 0, _LOG10P_CAP) if pcol else np.full(len(t), 1.0)
    size = np.nan_to_num(size)
    smax = _LOG10P_CAP if pcol else 1.0
    sig = (t["_p"] < 0.05).to_numpy() if pcol else np.zeros(len(t), bool)
    sc_ = ax.scatter(
        t["cells"].map(ci), t["pair"].map(ri), s=_area(size, smax), c=t["score"].to_numpy(dtype=float),
        cmap="viridis", edgecolors=np.where(sig, "black", "none"), linewidths=1.0,
    )  # fmt: skip
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_xlim(-0.6, len(cols) - 0.4)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    axes_of_rows = list(pairs["axis"])
    for i in range(1, len(rows)):
        if axes_of_rows[i] != axes_of_rows[i - 1]:
            ax.axhline(i - 0.5, color="grey", lw=0.6)
    for a in dict.fromkeys(axes_of_rows):
        if a:
            idx = [i for i, x in enumerate(axes_of_rows) if x == a]
            ax.text(len(cols) - 0.35, np.mean(idx), a, va="center", ha="left", fontsize=7, color="dimgrey")
    pad = 0.2 if any(axes_of_rows) else 0.03
    cb = fig.colorbar(sc_, ax=ax, shrink=0.45, pad=pad, anchor=(0.0, 1.0))
    cb.set_label("interaction score", fontsize=8)
    if pcol:
        handles = [
            Line2D([], [], ls="", marker="o", color="grey", markersize=np.sqrt(_area(v, smax)), label=lab)
            for v, lab in ((1.3, f"{pcol} = 0.05"), (2, f"{pcol} = 0.01"), (3, f"{pcol} = 0.001"),
                           (_LOG10P_CAP, f"{pcol} ≤ 1e-4"))
        ]  # fmt: skip
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", color="black", label=f"ring: {pcol} < 0.05"))
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(1.0 + pad, 0.0), fontsize=7, frameon=False,
                  labelspacing=1.1, borderaxespad=0)  # fmt: skip
    ax.set_xlabel("sender → receiver cell type")
    ax.set_title(f"{sample}: crosstalk on checkpoint axes (top {len(keep)})", fontsize=11)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------- cohort
#: cohort figures beyond this many samples change layout: cohort_composition stacks its panels, qc_cells draws
#: its per-sample panel as a table (rows of samples) instead of grouped bars
SIDE_BY_SIDE_MAX_SAMPLES = 8


def cohort_composition(cells: pd.DataFrame) -> Figure:
    """Per sample: compartment composition (stacked %), CSC % of malignant cells, immune-type composition."""
    if cells.empty or "sample" not in cells:
        return placeholder("no cells in the cohort", title="cohort composition")
    samples = list(dict.fromkeys(cells["sample"].astype(str)))
    comp = pd.crosstab(cells["sample"].astype(str), cells["compartment"].astype(str)).reindex(samples)
    comp_cols = _ordered(comp.columns, list(COMPARTMENT_COLOURS))
    frac = comp[comp_cols].div(comp.sum(axis=1), axis=0) * 100
    n = len(samples)
    stacked = n > SIDE_BY_SIDE_MAX_SAMPLES  # beyond 8 samples the panels are stacked and the labels turned upright
    if not stacked:  # the three panels side by side
        fig, axes = plt.subplots(1, 3, figsize=(max(12, 1.2 * n * 3 + 4), 4.8))
    else:  # stacked, ~0.3 inch per sample (side by side, 40 samples drew a 148-inch-wide figure)
        fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 0.3 * n + 3.5), 13.5))
    bottom = np.zeros(len(samples))
    for c in comp_cols:
        axes[0].bar(samples, frac[c], bottom=bottom, color=COMPARTMENT_COLOURS.get(c, "#8c8c8c"), label=c)
        bottom += frac[c].to_numpy()
    for i, s in enumerate(samples):
        axes[0].text(i, 101, f"n={int(comp.loc[s].sum()):,}", ha="center", va="bottom", fontsize=7,
                     rotation=90 if stacked else 0)  # fmt: skip
    axes[0].set_ylim(0, 125 if stacked else 110)
    axes[0].set_ylabel("% of cells")
    axes[0].set_title("compartments")
    if not stacked:
        axes[0].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.15), ncol=4)
    else:
        axes[0].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    mal = cells["malignant"].astype(bool) if "malignant" in cells else cells["compartment"] == "malignant"
    csc = cells["csc"].astype(bool) if "csc" in cells else pd.Series(False, index=cells.index)
    g = pd.DataFrame({"sample": cells["sample"].astype(str), "mal": mal, "csc": csc & mal})
    agg = g.groupby("sample", sort=False).sum().reindex(samples)
    pct = np.where(agg["mal"] > 0, 100 * agg["csc"] / agg["mal"].replace(0, np.nan), 0)
    axes[1].bar(samples, pct, color=CSC_COLOUR)
    for i, s in enumerate(samples):
        axes[1].text(i, pct[i], f"{int(agg.loc[s, 'csc'])}/{int(agg.loc[s, 'mal'])}", ha="center", va="bottom",
                     fontsize=7, rotation=90 if stacked else 0)  # fmt: skip
    axes[1].set_ylabel("% CSC of malignant cells")
    axes[1].set_title("CSC calls")
    axes[1].set_ylim(0, max(5.0, float(np.nanmax(pct)) * (1.4 if stacked else 1.25) if len(pct) else 5.0))
    imm = cells[cells["compartment"] == "immune"]
    if imm.empty:
        axes[2].text(0.5, 0.5, "no immune cells", ha="center", va="center", transform=axes[2].transAxes)
    else:
        it = pd.crosstab(imm["sample"].astype(str), imm["cell_type"].astype(str)).reindex(samples).fillna(0)
        itf = it.div(it.sum(axis=1).replace(0, np.nan), axis=0).fillna(0) * 100
        pal = _palette(itf.columns)
        bottom = np.zeros(len(samples))
        for c in sorted(itf.columns):
            axes[2].bar(samples, itf[c], bottom=bottom, color=pal[c], label=c)
            bottom += itf[c].to_numpy()
        axes[2].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[2].set_ylabel("% of immune cells")
    axes[2].set_title("immune cell types")
    for ax in axes:
        ax.tick_params(axis="x", rotation=(90 if stacked else 45) if n > 3 else 0, labelsize=8)
    fig.suptitle("Cohort: cell composition and CSC calls", fontsize=13)
    fig.tight_layout()
    return fig


def cohort_neighbours(table: pd.DataFrame, *, group: str = "CSC") -> Figure:
    """Heatmaps (one per neighbourhood) of the CSC immune-neighbour log2 enrichment: samples x immune types."""
    need = {"sample", "neighbourhood", "group", "immune_type", "log2_enrichment"}
    if not need <= set(table.columns):
        return placeholder("no neighbour table", title="cohort immune neighbours")
    t = table[(table["group"].astype(str) == group) & (table["immune_type"].fillna("").astype(str) != "")]
    if t.empty:
        return placeholder(f"no {group} neighbour enrichment in any sample", title="cohort immune neighbours")
    hoods = sorted(t["neighbourhood"].astype(str).unique())
    samples = list(dict.fromkeys(table["sample"].astype(str)))
    types = sorted(t["immune_type"].astype(str).unique())
    top = float(np.nanmax(np.abs(t["log2_enrichment"].to_numpy(dtype=float))))
    lim = min(max(0.5, top), LOG2_CAP)
    fig, axes = plt.subplots(
        1,
        len(hoods),
        figsize=(len(hoods) * (0.6 * len(types) + 2.0) + 1.5, 0.5 * len(samples) + 3.2),
        squeeze=False,
        layout="constrained",
    )
    fdr_col = "fdr" if "fdr" in t else "p"
    for ax, hood in zip(axes[0], hoods, strict=True):
        sub = t[t["neighbourhood"].astype(str) == hood]
        val = sub.pivot_table(index="sample", columns="immune_type", values="log2_enrichment", aggfunc="first")
        val = val.reindex(index=samples, columns=types)
        q = sub.pivot_table(index="sample", columns="immune_type", values=fdr_col, aggfunc="first")
        q = q.reindex(index=samples, columns=types)
        none = _none_mask(sub, "sample", "immune_type", samples, types)
        m = val.to_numpy(dtype=float)
        if none is not None:
            m = np.where(none, np.nan, m)
        im = _draw_cells(ax, m, q.to_numpy(dtype=float), none, lim, digits=1, fontsize=8)
        ax.set_xticks(range(len(types)))
        ax.set_xticklabels(types, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(samples)))
        ax.set_yticklabels(samples, fontsize=8)
        ax.set_title(f"{hood} neighbourhood")
    cb = fig.colorbar(im, ax=list(axes[0]), shrink=0.8, extend="both" if top > lim else "neither")
    cb.set_label(
        f"log2 enrichment around {group}" + (f"\n(colour capped at ±{lim:g})" if top > lim else ""), fontsize=8
    )
    fig.suptitle(
        f"Cohort: immune neighbours of {group}; * FDR < 0.05, ** < 0.01, *** < 0.001 (within-sample tests:"
        " cells as replicates; the test over patients is the forest plot); none: no such neighbour",
        fontsize=10,
    )
    return fig


def cohort_checkpoints(table: pd.DataFrame) -> Figure:
    """Heatmap of CSC vs non-CSC log2 fold change of every checkpoint gene (columns) per sample (rows)."""
    need = {"sample", "gene", "log2fc_csc_vs_noncsc"}
    if not need <= set(table.columns) or table.empty:
        return placeholder("no checkpoint table", title="cohort checkpoints")
    per = table.drop_duplicates(["sample", "gene"])
    samples = list(dict.fromkeys(table["sample"].astype(str)))
    genes = list(dict.fromkeys(per["gene"].astype(str)))
    val = per.pivot_table(index="sample", columns="gene", values="log2fc_csc_vs_noncsc", aggfunc="first")
    val = val.reindex(index=samples, columns=genes)
    q = None
    if "fdr" in per:
        q = per.pivot_table(index="sample", columns="gene", values="fdr", aggfunc="first").reindex(
            index=samples, columns=genes
        )
    fig = _heatmap(
        val,
        q,
        title="Cohort: checkpoint genes, CSC vs non-CSC malignant cells (stars: within-sample tests)",
        cbar_label="log2 fold change CSC / non-CSC",
        xlabel="gene",
        ylabel="sample",
    )
    fig.set_size_inches(max(8, 0.62 * len(genes) + 3), 0.5 * len(samples) + 2.8)
    ax = fig.axes[0]
    ax.set_xticklabels(genes, rotation=60, ha="right", fontsize=8)
    for txt in ax.texts:
        txt.set_fontsize(7)
    fig.tight_layout()
    return fig


def _fmt_p(p) -> str:
    return "" if p is None or not np.isfinite(p) else f"p={p:.2g}"


def _num(row: pd.Series, col: str) -> float:
    """``row[col]`` as a float; NaN when absent or not a number."""
    v = pd.to_numeric(pd.Series([row.get(col, np.nan)]), errors="coerce").iloc[0]
    return float(v) if pd.notna(v) else float("nan")


def forest(
    patients: pd.DataFrame,
    tests: pd.DataFrame,
    *,
    keys: list[str],
    effect: str,
    xlabel: str,
    title: str,
    facet: str = "definition",
    max_rows: int = 25,
) -> Figure:
    """Forest plot of per-patient effects: one row per ``keys`` combination (e.g. neighbourhood x immune type),
    one panel per ``facet`` value (CSC definition). Grey dots: each patient's effect (``patients[effect]``);
    black dot and bar: the mean over patients and its 95 % t interval (``tests``: ``mean_effect``, ``ci_low``,
    ``ci_high``, ``n_patients``, ``p``, ``fdr``); the right margin gives n patients and the test's p and FDR.
    Rows are the ``max_rows`` with the most patients and then the smallest p, per panel."""
    need_p, need_t = {*keys, facet, "patient", effect}, {*keys, facet, "mean_effect", "n_patients"}
    if not need_p <= set(patients.columns) or not need_t <= set(tests.columns):
        return placeholder("no per-patient table", title=title)
    pt = patients[pd.to_numeric(patients[effect], errors="coerce").notna()].copy()
    if pt.empty:
        return placeholder("no per-patient effect (no sample had both groups)", title=title)
    for k in keys:
        pt[k] = pt[k].astype(str)
    tt = tests.copy()
    for k in keys:
        tt[k] = tt[k].astype(str)
    facets = list(dict.fromkeys(pt[facet].astype(str)))
    panels = []
    for f in facets:
        t = tt[tt[facet].astype(str) == f].copy()
        t["_p"] = pd.to_numeric(t["p"], errors="coerce").fillna(2.0) if "p" in t else 2.0
        t = t.sort_values(["n_patients", "_p"], ascending=[False, True]).head(max_rows)
        t = t.sort_values("mean_effect", na_position="first")
        panels.append((f, t))
    n_rows = max(len(t) for _, t in panels) or 1
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.2 * len(panels), 0.32 * n_rows + 2.0), squeeze=False, layout="constrained"
    )
    for ax, (f, t) in zip(axes[0], panels, strict=True):
        labels = [" · ".join(str(r[k]) for k in keys) for _, r in t.iterrows()]
        sub = pt[pt[facet].astype(str) == f]
        for y, (_, r) in enumerate(t.iterrows()):
            m = np.ones(len(sub), dtype=bool)
            for k in keys:
                m &= sub[k].to_numpy() == r[k]
            vals = sub.loc[m, effect].to_numpy(dtype=float)
            ax.scatter(vals, np.full(vals.size, y), s=14, color="#9a9a9a", zorder=2)
            lo, hi = _num(r, "ci_low"), _num(r, "ci_high")
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color="black", lw=1.4, zorder=3)
            mean = _num(r, "mean_effect")
            if np.isfinite(mean):
                ax.scatter([mean], [y], s=30, color="black", zorder=4)
            fdr = _num(r, "fdr")
            txt = f"n={int(r['n_patients'])} {_fmt_p(_num(r, 'p'))}"
            ax.annotate(f"{txt} {stars(fdr)}".strip(), (1.01, y), xycoords=("axes fraction", "data"),
                        fontsize=7, va="center")  # fmt: skip
        ax.axvline(0, color="#c44e52", lw=0.8, ls="--", zorder=1)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_ylim(-0.7, max(len(labels), 1) - 0.3)
        kinds = sorted(set(sub["effect_kind"].astype(str))) if "effect_kind" in sub else []
        kind = kinds[0] if len(kinds) == 1 else ""
        # the continuous rows of a table hold another statistic (Spearman rho), named on their panel
        ax.set_xlabel(xlabel if kind in ("", "log2_enrichment") else f"{kind} (per patient)", fontsize=8)
        ax.set_title(f"{facet}: {f}", fontsize=9)
    fig.suptitle(
        f"{title}\nper patient (grey) and mean over patients with 95 % CI (black); p: test over patients, * FDR < 0.05",
        fontsize=9,
    )
    return fig


def burden_scatter(burden_patients: pd.DataFrame, burden_test: pd.DataFrame, *, top: int = 6) -> Figure:
    """CSC burden vs immune share across patients (the niche answer of dissociated data): one panel per
    immune type (the ``top`` with the smallest p, then the largest shares), x = the burden of the test
    table's first burden/definition, y = the type's share of the patient's cells, one dot per patient."""
    title = "Cohort: CSC burden vs immune composition, over patients"
    need = {"burden", "definition", "immune_type", "rho", "p", "n_patients"}
    if burden_patients.empty or not need <= set(burden_test.columns) or "patient" not in burden_patients:
        return placeholder("no per-patient burden table", title=title)
    t = burden_test.copy()
    first = t.iloc[0]
    xcol = f"csc_fraction:{first['definition']}" if first["burden"] == "csc_fraction" else str(first["burden"])
    if xcol not in burden_patients:
        return placeholder(f"no column {xcol} in the per-patient burden table", title=title)
    sel = t[(t["burden"] == first["burden"]) & (t["definition"].astype(str) == str(first["definition"]))].copy()
    shares = {c[6:]: burden_patients[c].astype(float).mean() for c in burden_patients if c.startswith("share:")}
    sel["_mean"] = sel["immune_type"].map(shares).fillna(0.0)
    sel["_p"] = pd.to_numeric(sel["p"], errors="coerce").fillna(2.0)
    sel = sel[sel["_mean"] > 0].sort_values(["_p", "_mean"], ascending=[True, False]).head(top)
    if sel.empty:
        return placeholder("no immune type with a share in any patient", title=title)
    fig, axes = plt.subplots(1, len(sel), figsize=(2.6 * len(sel) + 0.6, 3.1), squeeze=False, layout="constrained")
    x = burden_patients[xcol].to_numpy(dtype=float)
    for ax, (_, r) in zip(axes[0], sel.iterrows(), strict=True):
        y = burden_patients[f"share:{r['immune_type']}"].to_numpy(dtype=float)
        ax.scatter(x, y, s=22, color="#4c72b0")
        rho = _num(r, "rho")
        stat = f"rho={rho:.2f} {_fmt_p(float(r['_p']) if r['_p'] <= 1 else np.nan)}" if np.isfinite(rho) else "no test"
        ax.set_title(f"{r['immune_type']}\n{stat} (n={int(r['n_patients'])})", fontsize=8)
        ax.set_xlabel(xcol, fontsize=7)
        ax.set_ylabel("share of the patient's cells", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title} (Spearman over patients; one dot per patient)", fontsize=9)
    return fig


def cohort_figures(
    cells: pd.DataFrame,
    *,
    neighbours: pd.DataFrame,
    checkpoints: pd.DataFrame,
    patient_tables: dict[str, pd.DataFrame] | None = None,
) -> dict[str, Figure]:
    """Every cohort figure of the report, keyed by the names in :data:`COHORT_FIGURES`.

    ``patient_tables``: the cohort statistics (``neighbours_patients``/``neighbours_test``,
    ``checkpoints_patients``/``checkpoints_test``, ``crosstalk_patients``/``crosstalk_test``,
    ``burden_patients``/``burden_test``); absent tables give placeholder figures."""
    pt = patient_tables or {}
    empty = pd.DataFrame()

    def get(name):
        return pt.get(name, empty)

    return {
        "composition": cohort_composition(cells),
        "neighbours": cohort_neighbours(neighbours),
        "checkpoints": cohort_checkpoints(checkpoints),
        "forest_neighbours": forest(
            get("neighbours_patients"), get("neighbours_test"), keys=["neighbourhood", "immune_type"],
            effect="effect", xlabel="log2 enrichment around CSC (per patient)",
            title="Immune neighbours of CSC: patient-level effects",
        ),
        "forest_checkpoints": forest(
            get("checkpoints_patients"), get("checkpoints_test"), keys=["gene"], effect="log2fc_csc_vs_noncsc",
            xlabel="pseudobulk log2 CPM, CSC - non-CSC (per patient)",
            title="Checkpoint genes: patient-level effects",
        ),
        "forest_crosstalk": forest(
            get("crosstalk_patients"), get("crosstalk_test"), keys=["ligand", "receptor", "target"],
            effect="interaction_diff", xlabel="interaction difference CSC - non-CSC (per patient)",
            title="Crosstalk to immune receivers: patient-level effects",
        ),
        "burden": burden_scatter(get("burden_patients"), get("burden_test")),
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------------- QC
def _sample_rows(qc: pd.DataFrame) -> pd.DataFrame:
    """The per-sample rows of a QC table (``cell_type == 'all'``; every row of a table without ``cell_type``)."""
    if "cell_type" not in qc:
        return qc
    return qc[qc["cell_type"].astype(str) == "all"]


#: QC table columns drawn per filter: (column, label, colour)
QC_FILTERS = [
    ("removed_low_genes", "low genes", "#dd8452"),
    ("removed_high_genes", "high genes", "#c49c94"),
    ("removed_low_counts", "low counts", "#937860"),
    ("removed_high_counts", "high counts", "#bcbd22"),
    ("removed_high_mt", "high MT %", "#da8bc3"),
    ("doublets", "doublets", "#8172b3"),
]


#: qc_cells: at most this many sample / cell-type rows, those losing the largest share of their cells
QC_TYPE_ROWS_MAX = 40


def _percent_table(ax, m, text, *, row_labels, col_labels, fontsize=7) -> None:
    """A grey heatmap of percentages ``m`` (0-100, darker = more) with ``text`` in each cell and labelled axes."""
    ax.imshow(m, cmap="Greys", vmin=0, vmax=200, aspect="auto")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if text[i][j]:
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=fontsize)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=7)
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, rotation=30, ha="right", fontsize=7)


def qc_cells(qc: pd.DataFrame, *, warn_share: float = 0.5) -> Figure:
    """QC per sample and per cell type.

    Left: per sample, cells in, cells failing each filter (a cell can fail several), doublets and cells kept:
    grouped bars, or beyond :data:`SIDE_BY_SIDE_MAX_SAMPLES` samples a table of the counts shaded by the share of
    the sample's cells. Right (when the table has per-cell-type rows): for each sample's cell types, the
    percentage of the type's cells failing each filter and the percentage kept; types losing more than
    ``warn_share`` are in red. Beyond :data:`QC_TYPE_ROWS_MAX` rows only the rows losing the largest share are
    drawn (the title says so; every row is in the QC table).
    """
    if qc.empty or "sample" not in qc:
        return placeholder("no QC table", title="QC")
    per_sample = _sample_rows(qc)
    per_type = qc[qc["cell_type"].astype(str) != "all"] if "cell_type" in qc else qc.iloc[0:0]
    samples = list(per_sample["sample"].astype(str))
    cols = [("n_cells_in", "cells in", "#8c8c8c"), *QC_FILTERS, ("n_cells_out", "cells kept", "#55a868")]
    cols = [c for c in cols if c[0] in per_sample and (c[0].startswith("n_") or per_sample[c[0]].sum() > 0)]
    n_all = len(per_type)
    if n_all > QC_TYPE_ROWS_MAX:
        with np.errstate(invalid="ignore", divide="ignore"):
            lost = 1 - per_type["n_cells_out"].to_numpy(dtype=float) / per_type["n_cells_in"].to_numpy(dtype=float)
        keep = np.sort(np.argsort(-np.nan_to_num(lost, nan=-1.0), kind="stable")[:QC_TYPE_ROWS_MAX])
        per_type = per_type.iloc[keep]
    n_rows = len(per_type)
    table = len(samples) > SIDE_BY_SIDE_MAX_SAMPLES
    width_left = 1.0 * len(cols) + 3 if table else max(5, 1.3 * len(samples) * len(cols) / 3 + 2)
    height = max(4.2, 0.28 * max(n_rows, len(samples) if table else 0) + 1.8)
    fig, axes = plt.subplots(
        1, 2 if n_rows else 1, figsize=(width_left + (7 if n_rows else 3), height),
        squeeze=False, gridspec_kw={"width_ratios": [width_left, 7]} if n_rows else None,
    )  # fmt: skip
    ax = axes[0, 0]
    if table:
        counts = np.column_stack([per_sample[c].to_numpy(dtype=float) for c, _, _ in cols])
        with np.errstate(invalid="ignore", divide="ignore"):
            share = 100 * counts / per_sample["n_cells_in"].to_numpy(dtype=float)[:, None]
        text = [[f"{int(v):,}" if np.isfinite(v) else "" for v in row] for row in counts]
        _percent_table(ax, share, text, row_labels=samples, col_labels=[label for _, label, _ in cols])
        ax.set_title("Cells per sample, removed by each filter\n(shade: % of the sample's cells)", fontsize=10)
    else:
        width = 0.8 / len(cols)
        x = np.arange(len(samples))
        for j, (c, label, colour) in enumerate(cols):
            v = per_sample[c].to_numpy(dtype=float)
            bars = ax.bar(x + (j - (len(cols) - 1) / 2) * width, v, width=width, color=colour, label=label)
            ax.bar_label(bars, labels=[f"{int(a):,}" for a in v], fontsize=6, rotation=90, padding=2)
        ax.set_xticks(x)
        ax.set_xticklabels(samples, fontsize=8, rotation=45 if len(samples) > 4 else 0)
        ax.set_ylabel("cells")
        ax.margins(y=0.2)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=4)
        ax.set_title("Cells per sample, removed by each filter", fontsize=10)
    if n_rows:
        ax = axes[0, 1]
        fcols = [c for c in QC_FILTERS if c[0] in per_type] + [("n_cells_out", "kept", "#55a868")]
        n_in = per_type["n_cells_in"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.column_stack([100 * per_type[c].to_numpy(dtype=float) / n_in for c, _, _ in fcols])
        text = [[f"{v:.0f}" if np.isfinite(v) and (v > 0 or j == m.shape[1] - 1) else "" for j, v in enumerate(row)]
                for row in m]  # fmt: skip
        labels = [f"{s}: {c} (n={int(n)})" for s, c, n in zip(per_type["sample"], per_type["cell_type"], n_in,
                                                                   strict=True)]  # fmt: skip
        _percent_table(ax, m, text, row_labels=labels, col_labels=[label for _, label, _ in fcols])
        lost = (per_type["n_cells_out"].to_numpy(dtype=float) < (1 - warn_share) * n_in) & (n_in >= 10)
        for tick, bad in zip(ax.get_yticklabels(), lost, strict=True):
            if bad:
                tick.set_color(CSC_COLOUR)
                tick.set_fontweight("bold")
        title = "% of each cell type's cells (red: more than half removed)"
        if n_all > n_rows:
            title = f"% of each cell type's cells: the {n_rows} of {n_all} sample / type rows\nlosing the most (red: more than half removed; all in qc.tsv)"  # noqa: E501
        ax.set_title(title, fontsize=10)
    fig.suptitle("QC: cells removed by each filter and kept", fontsize=12)
    fig.tight_layout()
    return fig


def qc_metrics(cells: pd.DataFrame, qc: pd.DataFrame | None = None) -> Figure:
    """Distributions of detected genes, counts and mitochondrial % of the kept cells, per sample.

    Dashed lines: the QC thresholds of each sample (from the QC table).
    """
    metrics = [
        (c, label, thr)
        for c, label, thr in (
            ("n_genes", "detected genes per cell", "min_genes"),
            ("total_counts", "counts per cell", "min_counts"),
            ("pct_counts_mt", "% mitochondrial counts", "max_pct_mt"),
        )
        if c in cells
    ]
    if cells.empty or not metrics:
        return placeholder("no per-cell QC metrics", title="QC metrics")
    samples = list(dict.fromkeys(cells["sample"].astype(str)))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4), squeeze=False)
    for ax, (c, label, thr) in zip(axes[0], metrics, strict=True):
        data = [cells.loc[cells["sample"].astype(str) == s, c].to_numpy(dtype=float) for s in samples]
        data = [d[np.isfinite(d)] for d in data]
        log = c != "pct_counts_mt" and all(d.size and d.min() > 0 for d in data)
        pos = [i for i, d in enumerate(data) if d.size > 1]
        if pos:
            parts = ax.violinplot(
                [np.log10(data[i]) if log else data[i] for i in pos], positions=pos, showmedians=True, widths=0.8
            )
            for body in parts["bodies"]:
                body.set_facecolor("#4c72b0")
                body.set_alpha(0.6)
        if qc is not None and thr in qc and "sample" in qc:
            rows = _sample_rows(qc)
            t = rows.set_index(rows["sample"].astype(str))[thr].reindex(samples).to_numpy(dtype=float)
            for i, v in enumerate(t):
                if np.isfinite(v) and (v > 0 or not log):
                    y = np.log10(v) if log else v
                    ax.plot([i - 0.4, i + 0.4], [y, y], color=CSC_COLOUR, ls="--", lw=1)
        ax.set_xticks(range(len(samples)))
        ax.set_xticklabels(samples, fontsize=8, rotation=45 if len(samples) > 3 else 0)
        ax.set_ylabel(f"log10 {label}" if log else label)
        ax.set_title(label)
    fig.suptitle("QC: kept cells (red dashes: thresholds)", fontsize=12)
    fig.tight_layout()
    return fig


def signature_coverage(coverage: pd.DataFrame) -> Figure:
    """Heatmap of the fraction of each signature's genes present in each sample's data."""
    need = {"sample", "signature"}
    if not need <= set(coverage.columns) or coverage.empty:
        return placeholder("no signature coverage table", title="signature coverage")
    t = coverage.copy()
    if "fraction_present" not in t:
        if {"n_present", "n_genes"} <= set(t.columns):
            t["fraction_present"] = t["n_present"] / t["n_genes"].replace(0, np.nan)
        else:
            return placeholder("signature coverage table has no fraction of genes present", title="coverage")
    samples = list(dict.fromkeys(t["sample"].astype(str)))
    sigs = list(dict.fromkeys(t["signature"].astype(str)))
    val = t.pivot_table(index="sample", columns="signature", values="fraction_present", aggfunc="first")
    val = val.reindex(index=samples, columns=sigs) * 100
    m = val.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(sigs) + 3), 0.45 * len(samples) + 2.5))
    im = ax.imshow(m, cmap="Greens", vmin=0, vmax=100, aspect="auto")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.0f}%", ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > 60 else "black")  # fmt: skip
    ax.set_xticks(range(len(sigs)))
    ax.set_xticklabels(sigs, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(samples)))
    ax.set_yticklabels(samples, fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8).set_label("% of signature genes in the data", fontsize=8)
    ax.set_title("Signature genes present per sample")
    fig.tight_layout()
    return fig


def qc_figures(qc: pd.DataFrame, *, cells: pd.DataFrame, coverage: pd.DataFrame) -> dict[str, Figure]:
    """Every QC figure of the report, keyed by the names in :data:`QC_FIGURES`."""
    return {
        "qc_cells": qc_cells(qc),
        "qc_metrics": qc_metrics(cells, qc),
        "signature_coverage": signature_coverage(coverage),
    }
