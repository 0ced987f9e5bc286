"""What every benchmark script prints the same way: progress lines, milliseconds, tables, machine load.

Measurements differ per script; their reporting does not, so a reader compares
the scripts' output line for line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["load_average", "ms", "positive_ints", "render_table", "say"]


def say(message: str) -> None:
    """A progress line on standard error, so standard output holds only the results."""
    print(f"# {message}", file=sys.stderr, flush=True)


def ms(value: float | None) -> str:
    """Milliseconds with one decimal, ``-`` when not measured."""
    return "-" if value is None else f"{value:.1f}"


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages: how busy the shared cores were."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, right: set[int]) -> str:
    """A Markdown table, padded so that it also reads as plain text; columns in ``right`` align right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs) + " |"

    rules = [("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)]
    return "\n".join([line(header), "|" + "|".join(rules) + "|", *(line(r) for r in rows)])


def positive_ints(what: str, *, parse: Callable[[str], int] = int) -> Callable[[str], tuple[int, ...]]:
    """An argparse type: a comma-separated list of ``what`` (e.g. "client count"), each at least 1."""

    def convert(text: str) -> tuple[int, ...]:
        try:
            values = tuple(parse(v) for v in text.split(",") if v.strip())
        except ValueError as e:
            msg = f"not a comma-separated list of {what}s: {text!r}"
            raise argparse.ArgumentTypeError(msg) from e
        if not values or min(values) < 1:
            msg = f"needs at least one {what}, each ≥ 1"
            raise argparse.ArgumentTypeError(msg)
        return values

    return convert
