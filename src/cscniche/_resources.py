"""Tables shipped with the library (markers, compartments, gene sets, checkpoints, gene positions).

A config value ``cscniche:<name>`` names the file ``<name>`` in the package's ``data/`` folder, found through
:mod:`importlib.resources`, so the defaults work from any directory and in an installed package. Any other
value is a path of the user's own and is returned unchanged.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PREFIX = "cscniche:"  # also in cscniche._smk, which the Snakefile loads by path


def bundled(name: str) -> Path:
    """The path of the shipped table ``name`` (e.g. ``markers.tsv``, ``genesets/csc_signatures.gmt``).

    Raises
    ------
    FileNotFoundError
        When the package ships no such file (the message lists what it ships).
    """
    root = resources.files("cscniche") / "data"
    path = Path(str(root / name))
    if not path.is_file():
        shipped = sorted(str(p.relative_to(Path(str(root)))) for p in Path(str(root)).rglob("*") if p.is_file())
        raise FileNotFoundError(f"cscniche ships no table '{name}'; it ships: {', '.join(shipped)}")
    return path


def resolve(path: str | Path) -> Path:
    """``cscniche:<name>`` as the shipped file's path (:func:`bundled`); any other path unchanged."""
    text = str(path)
    return bundled(text[len(PREFIX) :]) if text.startswith(PREFIX) else Path(path)
