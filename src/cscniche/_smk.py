"""Glue for the thin Snakemake scripts: logging to the rule's log and one-line errors."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings

from ._errors import InputError


@contextlib.contextmanager
def step(snakemake):
    """Route logging and warnings to ``snakemake.log[0]``; turn an :class:`InputError` into one line.

    On an InputError the line ``ERROR: <message>`` goes to the log and to stderr and the script
    exits 1, so Snakemake deletes the rule's outputs (no partial output) and names the log.
    """
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        yield
    except InputError as exc:
        logging.getLogger("cscniche").error("%s", exc)
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
