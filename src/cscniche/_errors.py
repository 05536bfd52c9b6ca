"""Errors raised for bad input.

Every error the pipeline raises on bad user input is an :class:`InputError` whose
message is one line naming the sample and the file, and saying what to do.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: one line, naming sample and file."""

    def __init__(self, message: str, *, sample: str | None = None, path: str | None = None):
        where = []
        if sample is not None:
            where.append(f"sample '{sample}'")
        if path is not None:
            where.append(f"file '{path}'")
        prefix = ", ".join(where)
        text = f"{prefix}: {message}" if prefix else message
        super().__init__(" ".join(text.split()))
        self.message = message
        self.sample = sample
        self.path = path
