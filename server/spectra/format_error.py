"""The one error of the spectrum readers: this file is not a spectrum we can read, and why.

Kept in its own module so that every format reader can raise it without
importing the dispatcher (:mod:`.readers`), which re-exports it.
"""

from __future__ import annotations

__all__ = ["SpectrumFormatError"]


class SpectrumFormatError(ValueError):
    """A file could not be read as a 1-D spectrum.

    A ``ValueError`` so that callers who only know "bad input" can catch it; the
    web layer turns it into a usage error (the uploader's fault, never a crash).

    Parameters
    ----------
    source
        Which file: its name, or ``<upload>`` when none was given.
    problem
        What is wrong with it, phrased for the person who sent it.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
