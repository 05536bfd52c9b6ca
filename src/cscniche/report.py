"""Provenance for the report: installed package versions and the configuration used (no plotting here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

DEFAULT_PACKAGES = (
    "cscniche",
    "scanpy",
    "anndata",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "igraph",
    "leidenalg",
    "umap-learn",
    "h5py",
    "snakemake",
    "squidpy",
    "liana",
    "gseapy",
    "decoupler",
    "infercnvpy",
    "pyucell",
)


def software_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> pd.DataFrame:
    """Installed version of each package (``importlib.metadata``; ``not installed`` when absent) and Python."""
    import platform
    from importlib import metadata

    rows = [{"package": "python", "version": platform.python_version()}]
    for p in packages:
        try:
            v = metadata.version(p)
        except metadata.PackageNotFoundError:
            v = "not installed"
        rows.append({"package": p, "version": v})
    return pd.DataFrame(rows)


def config_text(config: Mapping) -> str:
    """The configuration as YAML (keys in the given order)."""
    import yaml

    return yaml.safe_dump(_plain(config), sort_keys=False, default_flow_style=False)


def _plain(obj):
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def software_html(
    versions: pd.DataFrame, config_yaml: str, *, title: str = "Software versions and configuration"
) -> str:
    """A small self-contained HTML page: the package-version table and the configuration used (YAML)."""
    import html

    rows = "\n".join(
        f"<tr><td>{html.escape(str(p))}</td><td>{html.escape(str(v))}</td></tr>"
        for p, v in zip(versions["package"], versions["version"], strict=True)
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}pre{background:#f6f6f6;padding:0.5em}</style>"
        f"</head><body>\n<h2>{html.escape(title)}</h2>\n<h3>Packages</h3>\n"
        f"<table><tr><th>package</th><th>version</th></tr>\n{rows}\n</table>\n"
        f"<h3>Configuration used</h3>\n<pre>{html.escape(config_yaml)}</pre>\n</body></html>\n"
    )


def software_report(config: Mapping, packages: Iterable[str] = DEFAULT_PACKAGES) -> dict:
    """``versions`` (table), ``config`` (YAML text) and ``html`` (both on one page) for the report."""
    versions = software_versions(packages)
    text = config_text(config)
    return {"versions": versions, "config": text, "html": software_html(versions, text)}
